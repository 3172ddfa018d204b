package chstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

// TestIntegrationChainReport records a report bundle (no agent, anomaly or
// incident) in the evidence_chain table: it is stored, found by period,
// and the chain verifies; a changed report file is named.
func TestIntegrationChainReport(t *testing.T) {
	ctx := t.Context()
	chain := NewChain(newStore(t))
	root := filepath.Join(t.TempDir(), "evidence")
	t.Cleanup(func() {
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	files := []evidence.ReportFile{{Name: "report.html", Data: []byte("<p>42</p>")}, {Name: "report.pdf", Data: []byte("%PDF-1.3\n42\n%%EOF\n")}}
	b, err := evidence.RecordReport(ctx, chain, root, "2026-11", files, time.UnixMilli(1_800_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if _, seq, err := chain.Head(ctx); err != nil || seq != 1 {
		t.Fatalf("head: seq %d, %v", seq, err)
	}
	recs, err := evidence.FindReports(ctx, chain, "2026-11")
	if err != nil || len(recs) != 1 || recs[0].ManifestSHA256 != b.SHA256 || recs[0].AgentID != "" {
		t.Fatalf("FindReports: %+v, %v", recs, err)
	}
	if err := evidence.VerifyChain(ctx, chain, root); err != nil {
		t.Fatal(err)
	}
	pdf := filepath.Join(b.Path, "report.pdf")
	_ = os.Chmod(b.Path, 0o755)
	_ = os.Chmod(pdf, 0o644)
	if err := os.WriteFile(pdf, []byte("%PDF-1.3\n43\n%%EOF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = evidence.VerifyChain(ctx, chain, root)
	found := false
	for _, e := range evidence.IntegrityErrors(err) {
		found = found || e.File == "report.pdf"
	}
	if !found {
		t.Fatalf("VerifyChain after changing the PDF: %v", err)
	}
}
