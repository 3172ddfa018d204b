package evidence

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// SnapshotAction is the audit action of a snapshot step (playbooks'
// KindSnapshot): its ok rows carry the bundle's hash (SnapshotDetail).
const SnapshotAction = "snapshot"

// SnapshotDetail is the detail of a snapshot's audit row: the bundle's
// id, chain position, hash and path. VerifyAnchored reads it back, so the
// audit trail keeps each bundle's hash as it was when it was written.
func SnapshotDetail(b Bundle) string {
	return fmt.Sprintf("bundle %s seq %d sha256 %s at %s", b.Manifest.BundleID, b.Manifest.Seq, b.SHA256, b.Path)
}

// snapshotDetail reads SnapshotDetail's form, and the older one without
// the seq.
var snapshotDetail = regexp.MustCompile(`^bundle ([A-Za-z0-9][A-Za-z0-9_.-]{0,127}) (?:seq ([1-9][0-9]{0,18}) )?sha256 ([0-9a-f]{64})(?: |$)`)

// AuditedBundle is a bundle as a snapshot's audit row recorded it.
type AuditedBundle struct {
	BundleID string
	// Seq is the bundle's chain position, 0 if the row predates it.
	Seq    int64
	SHA256 string
	AtMs   int64
}

// Anchors are what the audit trail says about the evidence chain: the
// hash of every bundle as it was written, and the signed checkpoints.
// They live outside the bundle directory and the chain, so rewriting
// those does not rewrite these.
type Anchors struct {
	Bundles     []AuditedBundle
	Checkpoints []Checkpoint
	// Unreadable are checkpoint rows that do not parse: each is an
	// integrity problem.
	Unreadable []*IntegrityError
}

// anchorLimit is the Filter limit ReadAnchors asks for: every row.
const anchorLimit = math.MaxInt32

// ReadAnchors reads the snapshot and checkpoint rows of the audit trail.
// Snapshot rows whose detail does not name a bundle hash (dry runs,
// failures) are skipped; a checkpoint row that does not parse is kept in
// Unreadable.
func ReadAnchors(ctx context.Context, st audit.Store) (Anchors, error) {
	var an Anchors
	snaps, err := st.Query(ctx, audit.Filter{Action: SnapshotAction, Limit: anchorLimit})
	if err != nil {
		return an, fmt.Errorf("read snapshot rows of the audit trail: %w", err)
	}
	for _, r := range snaps {
		m := snapshotDetail.FindStringSubmatch(r.Detail)
		if r.Result != audit.ResultOK || m == nil {
			continue
		}
		b := AuditedBundle{BundleID: m[1], SHA256: m[3], AtMs: r.AtMs}
		if m[2] != "" {
			b.Seq, _ = strconv.ParseInt(m[2], 10, 64)
		}
		an.Bundles = append(an.Bundles, b)
	}
	cps, err := st.Query(ctx, audit.Filter{Action: audit.ActionCheckpoint, Limit: anchorLimit})
	if err != nil {
		return an, fmt.Errorf("read checkpoint rows of the audit trail: %w", err)
	}
	for _, r := range cps {
		cp, err := ParseCheckpoint(r.Detail)
		if err != nil {
			an.Unreadable = append(an.Unreadable, &IntegrityError{Reason: fmt.Sprintf("audit row %s at %s: %v", r.ID, fmtMs(r.AtMs), err)})
			continue
		}
		an.Checkpoints = append(an.Checkpoints, cp)
	}
	return an, nil
}

func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

// Report is what VerifyAnchored found, besides the problems.
type Report struct {
	// Records is the number of distinct chain records; HeadSeq and
	// HeadSHA256 are the last one's.
	Records    int
	HeadSeq    int64
	HeadSHA256 string
	// AuditedBundles is the number of snapshot rows compared.
	AuditedBundles int
	// KeyIDs are the verifying keys' ids, empty when no key was given
	// (then checkpoints were not checked).
	KeyIDs []string
	// Checkpoints is the number of checkpoints whose signature verified.
	Checkpoints int
	// Latest is the verified checkpoint of the highest seq (the latest
	// made among those), nil if none.
	Latest *Checkpoint
	// Unanchored is the number of records after Latest's seq: written
	// since the last checkpoint.
	Unanchored int64
}

// VerifyAnchored checks the chain and the bundles as VerifyChain does,
// and then the chain against an: every audited bundle must be in the chain
// with the hash the audit trail recorded when it was written (a cut chain
// lacks it, a rewritten one has another hash), and, when public keys are
// given, every checkpoint must be signed by one of them (several: the keys
// of a rotation) and name a record the chain holds with the signed hash.
// With keys and a non-empty chain, at least one checkpoint must exist. It returns the report and every problem found,
// each an *IntegrityError; FirstDivergence picks the earliest.
func VerifyAnchored(ctx context.Context, store ChainStore, root string, an Anchors, pubs ...ed25519.PublicKey) (Report, error) {
	var rep Report
	var errs []error
	if err := VerifyChain(ctx, store, root); err != nil {
		errs = append(errs, err)
	}
	bySeq := map[int64]Record{}
	byBundle := map[string]Record{}
	var prev *Record
	err := store.Records(ctx, func(r Record) error {
		if prev != nil && r == *prev {
			return nil
		}
		rc := r
		prev = &rc
		rep.Records++
		if _, ok := bySeq[r.Seq]; !ok {
			bySeq[r.Seq] = r
		}
		if _, ok := byBundle[r.BundleID]; !ok {
			byBundle[r.BundleID] = r
		}
		if r.Seq >= rep.HeadSeq {
			rep.HeadSeq, rep.HeadSHA256 = r.Seq, r.ManifestSHA256
		}
		return nil
	})
	if err != nil {
		return rep, errors.Join(append(errs, fmt.Errorf("verify evidence chain: %w", err))...)
	}

	rep.AuditedBundles = len(an.Bundles)
	for _, b := range an.Bundles {
		r, ok := byBundle[b.BundleID]
		switch {
		case !ok:
			errs = append(errs, &IntegrityError{BundleID: b.BundleID, Seq: b.Seq,
				Reason: fmt.Sprintf("the audit trail recorded it at %s with manifest hash %s, but the evidence chain has no record of it: the chain was cut or the record removed", fmtMs(b.AtMs), b.SHA256)})
		case r.ManifestSHA256 != b.SHA256:
			errs = append(errs, &IntegrityError{BundleID: b.BundleID, Seq: r.Seq,
				Reason: fmt.Sprintf("the chain records manifest hash %s, but the audit trail recorded %s when it was written at %s: the bundle and its record were rewritten", r.ManifestSHA256, b.SHA256, fmtMs(b.AtMs))})
		case b.Seq != 0 && r.Seq != b.Seq:
			errs = append(errs, &IntegrityError{BundleID: b.BundleID, Seq: min(r.Seq, b.Seq),
				Reason: fmt.Sprintf("the chain records it at seq %d, but the audit trail recorded seq %d: the chain was reordered", r.Seq, b.Seq)})
		}
	}

	for _, u := range an.Unreadable {
		errs = append(errs, u)
	}
	if len(pubs) > 0 {
		byID := map[string]ed25519.PublicKey{}
		for _, p := range pubs {
			byID[KeyID(p)] = p
			rep.KeyIDs = append(rep.KeyIDs, KeyID(p))
		}
		for _, cp := range an.Checkpoints {
			pub, ok := byID[cp.KeyID]
			if !ok {
				pub = pubs[0] // Verify says which key signed and which verifies
			}
			if err := cp.Verify(pub); err != nil {
				errs = append(errs, &IntegrityError{Seq: cp.Seq, BundleID: bundleAt(bySeq, cp.Seq),
					Reason: fmt.Sprintf("checkpoint of seq %d made at %s: %v", cp.Seq, fmtMs(cp.AtMs), err)})
				continue
			}
			rep.Checkpoints++
			if rep.Latest == nil || cmp.Or(cmp.Compare(cp.Seq, rep.Latest.Seq), cmp.Compare(cp.AtMs, rep.Latest.AtMs)) > 0 {
				c := cp
				rep.Latest = &c
			}
			r, ok := bySeq[cp.Seq]
			switch {
			case !ok:
				errs = append(errs, &IntegrityError{Seq: cp.Seq,
					Reason: fmt.Sprintf("a checkpoint signed at %s anchors seq %d with manifest hash %s, but the chain ends at seq %d: records %d to %d were cut", fmtMs(cp.AtMs), cp.Seq, cp.HeadSHA256, rep.HeadSeq, rep.HeadSeq+1, cp.Seq)})
			case r.ManifestSHA256 != cp.HeadSHA256:
				errs = append(errs, &IntegrityError{BundleID: r.BundleID, Seq: cp.Seq,
					Reason: fmt.Sprintf("a checkpoint signed at %s anchors manifest hash %s here, but the chain records %s: the chain was rewritten at or before seq %d", fmtMs(cp.AtMs), cp.HeadSHA256, r.ManifestSHA256, cp.Seq)})
			}
		}
		if rep.Latest != nil {
			rep.Unanchored = max(0, rep.HeadSeq-rep.Latest.Seq)
		} else if rep.Records > 0 {
			rep.Unanchored = rep.HeadSeq
			errs = append(errs, &IntegrityError{Reason: fmt.Sprintf("the audit trail holds no checkpoint signed by key %s: nothing outside the bundle directory anchors the chain's %d records", strings.Join(rep.KeyIDs, " or "), rep.Records)})
		}
	}
	return rep, errors.Join(errs...)
}

func bundleAt(bySeq map[int64]Record, seq int64) string {
	return bySeq[seq].BundleID
}

// FirstDivergence returns the problem in err of the earliest chain
// position: the first record that no longer is what was written. Problems
// without a position come last; nil if err holds no *IntegrityError.
func FirstDivergence(err error) *IntegrityError {
	all := IntegrityErrors(err)
	if len(all) == 0 {
		return nil
	}
	pos := func(e *IntegrityError) int64 {
		switch {
		case e.Seq > 0:
			return e.Seq
		case e.Link[1] > 0:
			return e.Link[1]
		}
		return math.MaxInt64
	}
	return slices.MinFunc(all, func(a, b *IntegrityError) int { return cmp.Compare(pos(a), pos(b)) })
}
