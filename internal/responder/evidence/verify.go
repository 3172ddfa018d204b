package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IntegrityError is one thing Verify or VerifyChain found wrong: a file of
// a bundle, a bundle as a whole, or a link between two positions of the
// chain. The functions return every problem they find, joined; use
// errors.As, or walk the join, to get at the fields.
type IntegrityError struct {
	// BundleID is the bundle concerned ("" for a problem of the chain's
	// records alone). For a broken link it is the later bundle.
	BundleID string
	// Seq is the bundle's chain position when known, else 0.
	Seq int64
	// File is the file of the bundle concerned, "" for the bundle as a
	// whole or for a link.
	File string
	// Link holds the chain positions a broken link joins, [0, 0] if the
	// problem is not a link.
	Link [2]int64
	// PrevBundleID is the earlier bundle of a broken link.
	PrevBundleID string
	// Reason says what is wrong, for a person.
	Reason string
}

// Error implements error.
func (e *IntegrityError) Error() string {
	switch {
	case e.Link != [2]int64{}:
		return fmt.Sprintf("evidence chain link %d→%d (bundle %s → bundle %s): %s", e.Link[0], e.Link[1], e.PrevBundleID, e.BundleID, e.Reason)
	case e.File != "":
		return fmt.Sprintf("evidence bundle %s: %s: %s", e.BundleID, e.File, e.Reason)
	case e.Seq != 0 && e.BundleID == "":
		return fmt.Sprintf("evidence chain seq %d: %s", e.Seq, e.Reason)
	case e.Seq != 0:
		return fmt.Sprintf("evidence bundle %s (seq %d): %s", e.BundleID, e.Seq, e.Reason)
	case e.BundleID != "":
		return fmt.Sprintf("evidence bundle %s: %s", e.BundleID, e.Reason)
	default:
		return "evidence chain: " + e.Reason
	}
}

// IntegrityErrors returns every *IntegrityError in err's tree, in order,
// for callers that list or count the problems.
func IntegrityErrors(err error) []*IntegrityError {
	var out []*IntegrityError
	// errors.As stops at the first match, so walk the whole tree by hand;
	// config's structuredProblems walks its own error type the same way.
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *IntegrityError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// VerifyFiles checks the bundle id under root against its own manifest:
// every listed file is present, a regular file, of the listed size and
// SHA-256, and nothing unlisted is in the directory. It returns the
// manifest (zero if it could not be parsed), the manifest's SHA-256 (""
// if it could not be read) and every problem found as *IntegrityError. It
// cannot tell an edited manifest; Verify, which also checks the chain, can.
// It only reads, so it is safe to call concurrently with anything.
func VerifyFiles(root, id string) (Manifest, string, error) {
	if err := ValidID(id); err != nil {
		return Manifest{}, "", fmt.Errorf("verify: %w", err)
	}
	dir := filepath.Join(root, id)
	bad := func(file, format string, args ...any) *IntegrityError {
		return &IntegrityError{BundleID: id, File: file, Reason: fmt.Sprintf(format, args...)}
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Manifest{}, "", &IntegrityError{BundleID: id, Reason: fmt.Sprintf("directory %s is missing", dir)}
	case err != nil:
		return Manifest{}, "", fmt.Errorf("verify bundle %s: %w", id, err)
	case !fi.IsDir():
		return Manifest{}, "", &IntegrityError{BundleID: id, Reason: fmt.Sprintf("%s is not a directory", dir)}
	}
	b, err := readManifest(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Manifest{}, "", bad(ManifestJSON, "missing")
	case err != nil:
		return Manifest{}, "", bad(ManifestJSON, "%v", err)
	}
	h := sha256.Sum256(b)
	sum := hex.EncodeToString(h[:])
	m, err := ParseManifest(b)
	if err != nil {
		return Manifest{}, sum, bad(ManifestJSON, "unreadable, so no file can be checked: %v", err)
	}
	var errs []error
	if m.BundleID != id {
		errs = append(errs, bad(ManifestJSON, "names bundle %q, not %s", clip(m.BundleID, 140), id))
	}
	for _, f := range m.Files {
		if err := checkFile(dir, f); err != nil {
			errs = append(errs, bad(f.Name, "%s", err))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("verify bundle %s: list files: %w", id, err))
	}
	for _, e := range entries {
		if e.Name() != ManifestJSON && !slices.ContainsFunc(m.Files, func(f File) bool { return f.Name == e.Name() }) {
			errs = append(errs, bad(e.Name(), "not listed in the manifest (added after the bundle was written)"))
		}
	}
	return m, sum, errors.Join(errs...)
}

// checkFile says what is wrong with one listed file, nil if nothing.
func checkFile(dir string, f File) error {
	path := filepath.Join(dir, f.Name)
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("missing")
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("size %d bytes, the manifest says %d (the file was changed)", fi.Size(), f.Size)
	}
	r, err := os.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("SHA-256 %s, the manifest says %s (the file was changed)", got, f.SHA256)
	}
	return nil
}

// Verify checks the bundle id under root: its files against its manifest
// (VerifyFiles) and its manifest against the bundle's record in store. It
// returns nil if the bundle is intact, else every problem found, each an
// *IntegrityError naming the bundle and the file, or a plain error if the
// chain could not be read. It only reads; it is safe for concurrent use if
// store is.
func Verify(ctx context.Context, store ChainStore, root, id string) error {
	m, sum, err := VerifyFiles(root, id)
	errs := []error{err}
	if sum == "" {
		return errors.Join(errs...)
	}
	recs, err := findRecords(ctx, store, id)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("verify bundle %s: %w", id, err))...)
	}
	switch {
	case len(recs) == 0:
		errs = append(errs, &IntegrityError{BundleID: id, Reason: "not in the evidence chain (written but never recorded: Resume records it if it was written for the chain's next position)"})
	case len(recs) > 1:
		errs = append(errs, &IntegrityError{BundleID: id, Reason: fmt.Sprintf("recorded %d times in the evidence chain, at seq %d and %d", len(recs), recs[0].Seq, recs[1].Seq)})
	}
	if len(recs) > 0 {
		errs = append(errs, checkRecord(recs[0], m, sum)...)
	}
	return errors.Join(errs...)
}

// checkRecord compares a bundle's record with its manifest on disk.
func checkRecord(r Record, m Manifest, sum string) []error {
	var errs []error
	if r.ManifestSHA256 != sum {
		errs = append(errs, &IntegrityError{BundleID: r.BundleID, Seq: r.Seq, File: ManifestJSON,
			Reason: fmt.Sprintf("hashes to %s, but the evidence chain recorded %s at seq %d: the manifest was changed or the bundle replaced after it was recorded", sum, r.ManifestSHA256, r.Seq)})
	}
	if m.V == 0 {
		return errs // unparsable: VerifyFiles said so
	}
	var diffs []string
	add := func(field, rec, man string) {
		if rec != man {
			diffs = append(diffs, fmt.Sprintf("%s %q in the record, %q in the manifest", field, clip(rec, 140), clip(man, 140)))
		}
	}
	add("seq", fmt.Sprint(r.Seq), fmt.Sprint(m.Seq))
	add("previous hash", r.PrevSHA256, m.PrevManifestSHA256)
	add("agent", r.AgentID, m.AgentID)
	add("anomaly", r.AnomalyID, m.AnomalyID)
	add("incident", r.IncidentID, m.IncidentID)
	if len(diffs) > 0 {
		errs = append(errs, &IntegrityError{BundleID: r.BundleID, Seq: r.Seq, File: ManifestJSON,
			Reason: "disagrees with its chain record: " + strings.Join(diffs, "; ")})
	}
	return errs
}

// VerifyChain walks store's records from the first and checks the chain
// and every bundle under root: records numbered 1, 2, 3… without gaps,
// each record's previous hash equal to the record before's manifest hash,
// each bundle intact (VerifyFiles) with a manifest hashing to its record's
// hash, each manifest naming the previous bundle's actual manifest hash,
// and no bundle in root that the chain does not know. Identical copies of
// a record (a retried insert) count once. It returns nil if all holds,
// else every problem found, each an *IntegrityError naming the bundle,
// file or link, or a plain error if the chain could not be read. It reads
// every bundle in full, so it takes as long as reading the root; it is
// safe for concurrent use if store is.
func VerifyChain(ctx context.Context, store ChainStore, root string) error {
	var errs []error
	seen := map[string]int64{}
	var prev *Record
	prevDisk := "" // the previous bundle's manifest hash on disk, "" if unknown
	err := store.Records(ctx, func(r Record) error {
		if prev != nil && r == *prev {
			return nil
		}
		wantSeq, wantPrev := int64(1), ZeroHash
		link := func(reason string) *IntegrityError {
			e := &IntegrityError{BundleID: r.BundleID, Seq: r.Seq, Link: [2]int64{0, r.Seq}, PrevBundleID: "(none)", Reason: reason}
			if prev != nil {
				e.Link[0], e.PrevBundleID = prev.Seq, prev.BundleID
			}
			return e
		}
		if prev != nil {
			wantSeq, wantPrev = prev.Seq+1, prev.ManifestSHA256
		}
		if r.Seq != wantSeq {
			errs = append(errs, &IntegrityError{BundleID: r.BundleID, Seq: r.Seq,
				Reason: fmt.Sprintf("recorded at seq %d where seq %d was due: records are missing, repeated or out of order", r.Seq, wantSeq)})
		}
		if r.PrevSHA256 != wantPrev {
			errs = append(errs, link(fmt.Sprintf("the record names previous hash %s, but the record before it has manifest hash %s", r.PrevSHA256, wantPrev)))
		}
		if s, ok := seen[r.BundleID]; ok {
			errs = append(errs, &IntegrityError{BundleID: r.BundleID, Seq: r.Seq, Reason: fmt.Sprintf("recorded again (first at seq %d)", s)})
		} else {
			seen[r.BundleID] = r.Seq
		}

		m, sum, ferr := VerifyFiles(root, r.BundleID)
		if ferr != nil {
			errs = append(errs, ferr)
		}
		if sum != "" {
			errs = append(errs, checkRecord(r, m, sum)...)
		}
		if m.V != 0 && prevDisk != "" && m.PrevManifestSHA256 != prevDisk {
			errs = append(errs, link(fmt.Sprintf("the manifest names previous hash %s, but the previous bundle's manifest.json hashes to %s", m.PrevManifestSHA256, prevDisk)))
		}
		if m.V != 0 && prev == nil && m.PrevManifestSHA256 != ZeroHash {
			errs = append(errs, link(fmt.Sprintf("the first bundle's manifest names previous hash %s, not all zeros: bundles before it are missing", m.PrevManifestSHA256)))
		}
		prevDisk = sum
		rc := r
		prev = &rc
		return ctx.Err()
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("verify evidence chain: %w", err))
		return errors.Join(errs...)
	}
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("verify evidence chain: list %s: %w", root, err))
	}
	for _, e := range entries {
		if _, ok := seen[e.Name()]; !ok && e.IsDir() && ValidID(e.Name()) == nil {
			errs = append(errs, &IntegrityError{BundleID: e.Name(), Reason: fmt.Sprintf("in %s but not in the evidence chain", root)})
		}
	}
	return errors.Join(errs...)
}
