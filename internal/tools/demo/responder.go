package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/preview"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// demoAnalyst is the scripted SOC analyst who answers the demo's approval
// requests: nobody is there to click.
var demoAnalyst = audit.Actor{Kind: audit.ActorSlack, Name: "demo-analyst (scripted)", UserID: "UDEMO"}

// embeddedResponder is the demo's responder: the playbooks of
// responder.playbooks on the anomalies the detector publishes, alerts on
// the console (or Slack when a token is configured), revocations and
// quarantines into a deny-list file, evidence bundles from the embedded
// event store with the detector's window scores, all state under the data
// dir.
type embeddedResponder struct {
	svc      *respond.Service
	capture  *preview.Capture
	dataDir  string
	approved atomic.Int64 // approval requests the scripted analyst answered
	cancel   context.CancelFunc
	done     chan error
	log      *slog.Logger
}

func newResponder(cfg config.Config, store *embedstore.Store, det respond.FeedbackSink, scores respond.ScoreSource, out io.Writer, log *slog.Logger, reg prometheus.Registerer) (*embeddedResponder, error) {
	cfg.Responder.StateDir = filepath.Join(cfg.Embedded.DataDir, "responder")
	if cfg.Responder.GroupWait > 2*time.Second {
		cfg.Responder.GroupWait = 2 * time.Second // the demo replays a day a minute
	}
	if cfg.Responder.Slack.DigestInterval > 4*time.Second {
		// A thread's summaries on the wall clock: 5 minutes would come
		// after the demo ended; 4 s (about an hour and a half of the
		// replay) are all run by finish, whose settling waits 5 s ahead.
		cfg.Responder.Slack.DigestInterval = 4 * time.Second
	}
	var reg0 respond.Registry
	if b, err := os.ReadFile(filepath.Join(cfg.Embedded.DataDir, "agents.yaml")); err == nil {
		if r, err := inventory.ParseRegistry("agents.yaml", b); err == nil {
			reg0 = respond.RegistryFunc(func() *inventory.Registry { return r })
		}
	}
	if sl := cfg.Responder.Slack; sl.SigningSecret == "" && (sl.SigningSecretEnv == "" || os.Getenv(sl.SigningSecretEnv) == "") {
		// A secret of this run only: the alerts carry their buttons and
		// approval requests are posted, as with a Slack app, so the
		// preview and the message counts show what an analyst gets.
		cfg.Responder.Slack.SigningSecret = rand.Text()
	}
	// Everything posted is kept (on its way to the console or Slack) for
	// the preview files and the messages-per-incident count.
	capture := &preview.Capture{}
	wrap := func(n respond.Notifier) respond.Notifier { capture.Inner = n; return capture }
	svc, err := respond.Build(cfg, respond.Deps{Events: respond.EmbeddedEvents{Store: store}, Scores: scores, Feedback: det, Registry: reg0, Console: out, WrapNotifier: wrap}, log, reg)
	if err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &embeddedResponder{svc: svc, capture: capture, dataDir: cfg.Embedded.DataDir, cancel: cancel, done: make(chan error, 1), log: log}
	go func() { r.done <- svc.Run(ctx) }()
	return r, nil
}

// handle hands one anomaly to the responder and answers any approval
// request it opened.
func (r *embeddedResponder) handle(ctx context.Context, a anomaly.Anomaly) error {
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		return err
	}
	return nil
}

// approveAll answers every open approval request as the scripted analyst.
func (r *embeddedResponder) approveAll(ctx context.Context) (int, error) {
	reqs, err := r.svc.Engine.OpenApprovals(ctx)
	if err != nil {
		return 0, err
	}
	for _, id := range reqs {
		if _, err := r.svc.Engine.Answer(ctx, id, true, demoAnalyst); err != nil {
			return 0, err
		}
	}
	r.approved.Add(int64(len(reqs)))
	return len(reqs), nil
}

// responderSummary is what the responder did in the demo.
type responderSummary struct {
	Incidents []respond.Incident
	Actions   map[string]int // "action result" → count
	Approved  int
	Restored  string // "incident credential" restored at the end
	Bundles   []string
	ChainOK   error
	StateDir  string
	Evidence  string
	Denylist  string
	Posts     map[string]int
	// Messages are the Slack messages per incident, counted from what
	// the notifier received.
	Messages preview.Stats
	// Preview is the directory of the preview files (messages.json,
	// preview.html); PreviewErr why they could not be written.
	Preview    string
	PreviewErr error
}

// finish lets the queued actions run, answers approvals, restores the
// first revocation (what an incident responder does for a false alarm:
// `responder restore`), verifies the evidence, and stops the responder.
func (r *embeddedResponder) finish(ctx context.Context) (responderSummary, error) {
	e := r.svc.Engine
	var s responderSummary
	defer func() {
		r.cancel()
		<-r.done
		r.svc.Close()
	}()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if err := e.Settle(wctx, 5*time.Second); err != nil {
			return s, fmt.Errorf("responder did not settle: %w", err)
		}
		n, err := r.approveAll(wctx)
		if err != nil {
			return s, err
		}
		if n == 0 {
			break
		}
	}
	s.Incidents = e.Incidents()
	sort.Slice(s.Incidents, func(i, j int) bool { return s.Incidents[i].OpenedMs < s.Incidents[j].OpenedMs })
	for _, in := range s.Incidents {
		if len(in.Revoked) == 0 {
			continue
		}
		keys, err := e.Restore(wctx, in.ID, audit.Actor{Kind: audit.ActorCLI, Name: "demo (responder restore)"}, "demo: the incident responder lifts the block after review")
		if err != nil {
			return s, err
		}
		if err := e.Wait(wctx, keys...); err != nil {
			return s, fmt.Errorf("restore: %w", err)
		}
		s.Restored = in.ID + " " + strings.Join(in.Revoked, ",")
		break
	}
	if err := e.Settle(wctx, 5*time.Second); err != nil {
		return s, err
	}
	s.Approved = int(r.approved.Load())
	s.Incidents = e.Incidents()
	sort.Slice(s.Incidents, func(i, j int) bool { return s.Incidents[i].OpenedMs < s.Incidents[j].OpenedMs })
	recs, err := r.svc.Audit.Query(wctx, audit.Filter{Limit: 100000})
	if err != nil {
		return s, err
	}
	s.Actions = map[string]int{}
	for _, rec := range recs {
		s.Actions[rec.Action+" "+string(rec.Result)]++
	}
	for _, in := range s.Incidents {
		s.Bundles = append(s.Bundles, in.Snapshots...)
	}
	// The audit trail's bundle hashes are checked too, as responder
	// verify does; the demo signs no checkpoints.
	an, err := evidence.ReadAnchors(wctx, r.svc.Audit)
	if err != nil {
		return s, err
	}
	_, s.ChainOK = evidence.VerifyAnchored(wctx, r.svc.Chain, r.svc.Evidence, an)
	s.Evidence = r.svc.Evidence
	s.StateDir = filepath.Dir(r.svc.Evidence)
	s.Denylist = filepath.Join(s.StateDir, "denylist.txt")
	if r.svc.Console != nil {
		s.Posts = r.svc.Console.Posts()
	}
	incidents, err := r.capture.Incidents(wctx, e.EntryIncident)
	if err != nil {
		return s, err
	}
	s.Messages = preview.Count(incidents)
	// The preview is a view for the reader: failing to write it does not
	// fail the demo.
	s.Preview = filepath.Join(r.dataDir, "preview")
	_, _, s.PreviewErr = preview.Write(s.Preview, "agentwatch demo: what the responder posted", incidents)
	return s, nil
}

func printResponder(w io.Writer, s responderSummary) {
	fmt.Fprintf(w, "\n=== what the responder did ===\n")
	fmt.Fprintf(w, "%d incidents (an agent's anomalies within responder.incident_window share one incident and one alert thread)\n", len(s.Incidents))
	for i, in := range s.Incidents {
		if i == 15 {
			fmt.Fprintf(w, "  … and %d more (responder incidents --responder.state_dir %s)\n", len(s.Incidents)-i, s.StateDir)
			break
		}
		kinds := map[string]int{}
		for _, a := range in.Anomalies {
			kinds[a.Kind]++
		}
		var ks []string
		for k, n := range kinds {
			ks = append(ks, fmt.Sprintf("%s×%d", k, n))
		}
		sort.Strings(ks)
		fmt.Fprintf(w, "  %s  agent %-22s %s", in.ID, audit.TerminalSafe(in.AgentID, 40), strings.Join(ks, " "))
		if len(in.Snapshots) > 0 {
			fmt.Fprintf(w, "  evidence %s", strings.Join(in.Snapshots, ","))
		}
		if len(in.Revoked) > 0 {
			fmt.Fprintf(w, "  REVOKED %s", strings.Join(in.Revoked, ","))
		}
		fmt.Fprintln(w)
	}
	var acts []string
	for k := range s.Actions {
		acts = append(acts, k)
	}
	sort.Strings(acts)
	fmt.Fprintf(w, "audited actions (action result: count):\n")
	for _, k := range acts {
		fmt.Fprintf(w, "  %-32s %d\n", k, s.Actions[k])
	}
	if s.Approved > 0 {
		fmt.Fprintf(w, "%d approval requests answered \"approve\" by the demo's scripted analyst\n", s.Approved)
	}
	if s.Restored != "" {
		fmt.Fprintf(w, "restored at the end, as `responder restore` would: %s\n", s.Restored)
	}
	fmt.Fprintln(w, s.Messages)
	if s.PreviewErr != nil {
		fmt.Fprintf(w, "the Slack preview could not be written: %v\n", s.PreviewErr)
	}
	if s.ChainOK == nil {
		fmt.Fprintf(w, "evidence: %d bundles under %s; the hash chain verifies (responder verify)\n", len(s.Bundles), s.Evidence)
	} else {
		fmt.Fprintf(w, "evidence: %d bundles under %s; the chain does NOT verify: %v\n", len(s.Bundles), s.Evidence, s.ChainOK)
	}
}
