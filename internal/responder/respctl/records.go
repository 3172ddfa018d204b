package respctl

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

// AuditOptions say which audit records to print, and how.
type AuditOptions struct {
	// Filter selects the records; the caller validates it.
	Filter audit.Filter
	// JSON prints JSON instead of a table.
	JSON bool
}

// Audit writes the audit records o.Filter selects to w, and audits the
// query itself: who looked at what.
func Audit(ctx context.Context, cfg config.Config, log *slog.Logger, o AuditOptions, w io.Writer) error {
	// Open, defer the close, work: the shape of every respctl command (Verify, Restore);
	// what each opens and does differs, so there is nothing to share.
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	recs, err := al.Query(ctx, o.Filter)
	if err != nil {
		return err
	}
	// Reading the audit trail is itself audited: who looked at what.
	q := audit.Record{Actor: Operator(), Action: audit.ActionAuditQuery, AgentID: o.Filter.AgentID, IncidentID: o.Filter.IncidentID, Result: audit.ResultOK,
		Detail: fmt.Sprintf("%d records", len(recs))}
	if err := al.Append(ctx, q); err != nil {
		return err
	}
	if o.JSON {
		return audit.WriteJSON(w, recs)
	}
	return audit.WriteTable(w, recs, audit.TableOptions{})
}

// VerifyOptions say what to verify.
type VerifyOptions struct {
	// Bundle is the one bundle to verify; "" means every bundle of the
	// evidence chain, and the chain.
	Bundle string
	// PublicKeys are the files of the public keys the checkpoints must
	// be signed with (PEM; a private key file works too), several across
	// a key rotation. None means the key derived from
	// responder.evidence.checkpoint_key_file, if set.
	PublicKeys []string
}

// Verify checks evidence bundles against their manifests and the chain
// records, the chain against the audit trail's bundle hashes and signed
// checkpoints, and writes the verdict to w. A bundle or chain that does
// not verify is an error naming the first record that diverges.
func Verify(ctx context.Context, cfg config.Config, log *slog.Logger, o VerifyOptions, w io.Writer) error {
	// Open, defer the close, work: the shape of every respctl command (Audit, Restore);
	// what each opens and does differs, so there is nothing to share.
	deps, closeStores, err := respsvc.Stores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStores()
	chain := deps.Chain
	if chain == nil {
		fc, err := evidence.OpenFileChain(filepath.Join(cfg.Responder.StateDir, respond.ChainFile))
		if err != nil {
			return err
		}
		defer fc.Close()
		chain = fc
	}
	root := cfg.Responder.EvidenceRoot()
	if o.Bundle != "" {
		if err := evidence.Verify(ctx, chain, root, o.Bundle); err != nil {
			return fmt.Errorf("bundle %s does NOT verify: %w", audit.TerminalSafe(o.Bundle, 128), err)
		}
		fmt.Fprintf(w, "bundle %s verifies: every file matches its manifest, and the manifest its chain record\n", o.Bundle)
		return nil
	}
	var pubs []ed25519.PublicKey
	keyFiles := o.PublicKeys
	if len(keyFiles) == 0 && cfg.Responder.Evidence.CheckpointKeyFile != "" {
		keyFiles = []string{cfg.Responder.Evidence.CheckpointKeyFile}
	}
	for _, f := range keyFiles {
		pub, err := evidence.LoadPublicKey(f)
		if err != nil {
			return err
		}
		pubs = append(pubs, pub)
	}
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	an, err := evidence.ReadAnchors(ctx, al)
	if err != nil {
		return err
	}
	rep, err := evidence.VerifyAnchored(ctx, chain, root, an, pubs...)
	if err != nil {
		if first := evidence.FirstDivergence(err); first != nil {
			return fmt.Errorf("evidence chain does NOT verify.\nfirst divergent record: %s\nevery problem found:\n%w", describe(first), err)
		}
		return fmt.Errorf("evidence chain does NOT verify: %w", err)
	}
	fmt.Fprintf(w, "evidence chain verifies: %d records, each bundle matches its manifest and each manifest links to the one before\n", rep.Records)
	fmt.Fprintf(w, "audit trail: %d bundle hashes recorded when the bundles were written, each matches the chain\n", rep.AuditedBundles)
	switch {
	case len(pubs) == 0:
		fmt.Fprintln(w, "checkpoints: NOT checked: no public key (pass --public-key, or set responder.evidence.checkpoint_key_file)")
	case rep.Latest == nil:
		fmt.Fprintf(w, "checkpoints: none yet, and the chain is empty (key %s)\n", strings.Join(rep.KeyIDs, ", "))
	default:
		fmt.Fprintf(w, "checkpoints: %d signed by key %s; the latest anchors seq %d (%s), signed %s by key %s; %d records written since\n",
			rep.Checkpoints, strings.Join(rep.KeyIDs, " or "), rep.Latest.Seq, rep.Latest.HeadSHA256, time.UnixMilli(rep.Latest.AtMs).UTC().Format(time.RFC3339), rep.Latest.KeyID, rep.Unanchored)
	}
	return nil
}

// describe names an integrity problem's record for the first line of a
// failed verify.
func describe(e *evidence.IntegrityError) string {
	switch {
	case e.Seq > 0:
		return fmt.Sprintf("seq %d: %s", e.Seq, audit.TerminalSafe(e.Error(), 2000))
	case e.Link[1] > 0:
		return fmt.Sprintf("seq %d: %s", e.Link[1], audit.TerminalSafe(e.Error(), 2000))
	}
	return audit.TerminalSafe(e.Error(), 2000)
}

// IncidentsOptions say which incidents to list.
type IncidentsOptions struct {
	// Incident, when set, lists that incident's anomalies instead.
	Incident string
}

// Incidents writes the incidents the responder keeps (in its state
// directory, or in the distributed mode in kafka.responder_state_topic) to
// w as a table, oldest first, or one incident's anomalies.
func Incidents(cfg config.Config, o IncidentsOptions, w io.Writer) error {
	var ins []respond.Incident
	where := cfg.Responder.StateDir
	if cfg.Distributed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := respsvc.ReadSharedState(ctx, cfg, nil)
		if err != nil {
			return err
		}
		ins, where = st.Incidents, cfg.Kafka.ResponderStateTopic
	} else {
		var err error
		if ins, err = respond.ReadIncidents(cfg.Responder.StateDir); err != nil {
			return err
		}
	}
	if o.Incident != "" {
		for _, in := range ins {
			if in.ID != o.Incident {
				continue
			}
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ANOMALY\tKIND\tSEVERITY\tSCORE\tWINDOW (UTC)\tSUMMARY")
			for _, a := range in.Anomalies {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\n", audit.TerminalSafe(a.ID, 64), audit.TerminalSafe(a.Kind, 32), audit.TerminalSafe(a.Severity, 16), a.Score,
					time.UnixMilli(a.WindowStartMs).UTC().Format("2006-01-02 15:04"), audit.TerminalSafe(a.Summary, 100))
			}
			if in.Count > len(in.Anomalies) {
				fmt.Fprintf(tw, "… and %d more not kept\n", in.Count-len(in.Anomalies))
			}
			return tw.Flush()
		}
		return fmt.Errorf("no incident %s in %s", audit.TerminalSafe(o.Incident, 128), where)
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].OpenedMs < ins[j].OpenedMs })
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INCIDENT\tAGENT\tOPENED (UTC)\tANOMALIES\tEVIDENCE\tREVOKED")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, audit.TerminalSafe(in.AgentID, 64), time.UnixMilli(in.OpenedMs).UTC().Format("2006-01-02 15:04:05"),
			in.Count, strings.Join(in.Snapshots, ","), audit.TerminalSafe(strings.Join(in.Revoked, ","), 200))
	}
	return tw.Flush()
}
