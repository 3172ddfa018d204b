package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// KindReport is the manifest kind of a report bundle: a periodic report's
// files (its HTML and PDF editions), so that the chain holds their
// SHA-256 and VerifyChain finds a report changed after it was written.
const KindReport = "report"

// ReportFile is one file of a report bundle.
type ReportFile struct {
	// Name is a plain file name ([a-z0-9][a-z0-9_.-]*), not manifest.json.
	Name string
	Data []byte
}

var reportPeriod = regexp.MustCompile(`^[0-9]{4}-(W?[0-9]{2})$`)

// ReportPrefix is the start of the bundle id of every report of period:
// "report-2026-11-".
func ReportPrefix(period string) string { return "report-" + period + "-" }

// ReportBundleID names the report bundle of period holding files: the
// period and the first 8 bytes of the SHA-256 of the files' hashes, so
// recording the same report twice finds the existing bundle, and a report
// of the same period written again (new data) gets a bundle of its own.
func ReportBundleID(period string, files []ReportFile) string {
	h := sha256.New()
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(h, "%s\x00%x\n", f.Name, sum)
	}
	return ReportPrefix(period) + hex.EncodeToString(h.Sum(nil)[:8])
}

// RecordReport writes files as a report bundle of period under root and
// appends its record to store, the way Snapshot does for an incident: the
// manifest lists each file's SHA-256 and size, its own hash goes into the
// chain, and the bundle is read-only once in place. Recording the same
// files again returns the existing bundle (through Resume). now is the
// bundle's creation time. Safe to call concurrently with Snapshot on the
// same root and store.
func RecordReport(ctx context.Context, store ChainStore, root, period string, files []ReportFile, now time.Time) (Bundle, error) {
	if !reportPeriod.MatchString(period) {
		return Bundle{}, fmt.Errorf("record report: period %q: want 2026-11 or 2026-W47", clip(period, 40))
	}
	if len(files) == 0 {
		return Bundle{}, fmt.Errorf("record report %s: no files", period)
	}
	id := ReportBundleID(period, files)
	final := filepath.Join(root, id)
	if err := os.MkdirAll(root, RootMode); err != nil {
		return Bundle{}, fmt.Errorf("record report %s: create evidence root: %w", id, err)
	}
	if _, err := os.Lstat(final); err == nil {
		return Resume(ctx, store, root, id)
	}
	tmp, err := os.MkdirTemp(root, ".tmp-"+id+"-")
	if err != nil {
		return Bundle{}, fmt.Errorf("record report %s: %w", id, err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.Chmod(tmp, workMode)
			_ = os.RemoveAll(tmp)
		}
	}()
	m := Manifest{V: ManifestVersion, BundleID: id, Kind: KindReport, Period: period, CreatedMs: now.UnixMilli()}
	for _, f := range files {
		if !fileName.MatchString(f.Name) || f.Name == ManifestJSON || strings.HasPrefix(f.Name, ".") {
			return Bundle{}, fmt.Errorf("record report %s: %q is not a plain file name", id, clip(f.Name, 80))
		}
		entry, err := writeFile(tmp, f.Name, func(w *fileWriter) error {
			_, err := w.Write(f.Data)
			return err
		})
		if err != nil {
			return Bundle{}, fmt.Errorf("record report %s: %w", id, err)
		}
		m.Files = append(m.Files, entry)
	}
	b, done, err := link(ctx, store, tmp, final, m)
	published = done
	if errors.Is(err, ErrExists) {
		return Resume(ctx, store, root, id) // written meanwhile by another caller
	}
	if err != nil {
		return Bundle{}, fmt.Errorf("record report %s: %w", id, err)
	}
	return b, nil
}

// FindReports returns the chain's report bundles of period, in chain
// order: a scheduler asks it whether a period's report was already
// written.
func FindReports(ctx context.Context, store ChainStore, period string) ([]Record, error) {
	var out []Record
	prefix := ReportPrefix(period)
	err := store.Records(ctx, func(r Record) error {
		if strings.HasPrefix(r.BundleID, prefix) && (len(out) == 0 || r != out[len(out)-1]) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the evidence chain: %w", err)
	}
	return out, nil
}
