package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRecordReportLinksIntoTheChain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.src.Add(testEvents("agent-1", 20, 0, 10*time.Minute)...)
	f.snapshot(t, "inc-1", "agent-1")
	files := []ReportFile{{Name: "report.html", Data: []byte("<html>42</html>")}, {Name: "report.pdf", Data: []byte("%PDF-1.3 42")}}
	b, err := RecordReport(ctx, f.chain, f.root, "2026-11", files, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Seq != 2 || b.Manifest.Kind != KindReport || b.Manifest.Period != "2026-11" || !strings.HasPrefix(b.Manifest.BundleID, "report-2026-11-") {
		t.Fatalf("manifest: %+v", b.Manifest)
	}
	for i, file := range b.Manifest.Files {
		sum := sha256.Sum256(files[i].Data)
		if file.Name != files[i].Name || file.SHA256 != hex.EncodeToString(sum[:]) || file.Size != int64(len(files[i].Data)) {
			t.Errorf("file %d: %+v", i, file)
		}
	}
	if err := VerifyChain(ctx, f.chain, f.root); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}

	// The same report again: the same bundle, no new record.
	again, err := RecordReport(ctx, f.chain, f.root, "2026-11", files, t0.Add(3*time.Hour))
	if err != nil || again.SHA256 != b.SHA256 {
		t.Fatalf("again: %+v, %v", again, err)
	}
	if _, seq, _ := f.chain.Head(ctx); seq != 2 {
		t.Fatalf("head at seq %d after recording the same report twice", seq)
	}
	recs, err := FindReports(ctx, f.chain, "2026-11")
	if err != nil || len(recs) != 1 || recs[0].BundleID != b.Manifest.BundleID {
		t.Fatalf("FindReports: %+v, %v", recs, err)
	}
	if recs, _ := FindReports(ctx, f.chain, "2026-10"); len(recs) != 0 {
		t.Fatalf("FindReports(2026-10): %+v", recs)
	}

	// A snapshot after the report links to it.
	f.snapshot(t, "inc-2", "agent-1")
	if err := VerifyChain(ctx, f.chain, f.root); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}

	// A changed report is found.
	flipByte(t, filepath.Join(b.Path, "report.pdf"))
	err = VerifyChain(ctx, f.chain, f.root)
	if got := named(t, err); !slices.Contains(got, "report.pdf") {
		t.Fatalf("VerifyChain after changing the PDF: %v", err)
	}
}

func TestRecordReportRefuses(t *testing.T) {
	f := newFixture(t)
	ok := []ReportFile{{Name: "report.html", Data: []byte("x")}}
	for name, c := range map[string]struct {
		period string
		files  []ReportFile
	}{
		"bad period":    {"2026-11/../x", ok},
		"no files":      {"2026-11", nil},
		"manifest name": {"2026-11", []ReportFile{{Name: ManifestJSON, Data: []byte("{}")}}},
		"path":          {"2026-W47", []ReportFile{{Name: "../x.html", Data: []byte("x")}}},
	} {
		if _, err := RecordReport(context.Background(), f.chain, f.root, c.period, c.files, t0); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, seq, _ := f.chain.Head(context.Background()); seq != 0 {
		t.Errorf("chain at seq %d after refusals", seq)
	}
}

func TestParseManifestKind(t *testing.T) {
	m := Manifest{V: ManifestVersion, BundleID: "b", Seq: 1, PrevManifestSHA256: ZeroHash, Files: []File{{Name: "a", SHA256: ZeroHash}}}
	for kind, ok := range map[string]bool{"": true, KindReport: true, "other": false} {
		m.Kind = kind
		b, _ := MarshalManifest(m)
		if _, err := ParseManifest(b); (err == nil) != ok {
			t.Errorf("kind %q: %v", kind, err)
		}
		if kind == "" && strings.Contains(string(b), `"kind"`) {
			t.Error("a snapshot's manifest names a kind: old manifests would hash differently")
		}
	}
}
