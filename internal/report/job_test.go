package report

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

func TestJobWritesAndRecords(t *testing.T) {
	dir := t.TempDir()
	chain, err := evidence.OpenFileChain(filepath.Join(dir, "chain.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	root := filepath.Join(dir, "evidence")
	defer makeWritable(root)
	b, _ := fixtureBuilder()
	var steps []string
	b.Progress = func(s string) { steps = append(steps, s) }
	j := &Job{Builder: b, OutDir: filepath.Join(dir, "out"), Chain: chain, EvidenceRoot: root, Progress: b.Progress}
	res, err := j.Run(context.Background(), november)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 2 || res.Bundle == nil || len(steps) < 8 {
		t.Fatalf("%+v, steps %v", res, steps)
	}
	for _, w := range res.Files {
		data, err := os.ReadFile(w.Path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != w.SHA256 || filepath.Base(w.Path) != w.Name {
			t.Errorf("%s: hash %x, listed %s", w.Path, sum, w.SHA256)
		}
		// The bundle holds the same bytes, and its manifest their hash.
		inBundle := bundleName(w.Name)
		found := false
		for _, f := range res.Bundle.Manifest.Files {
			if f.Name == inBundle && f.SHA256 == w.SHA256 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s not in the bundle's manifest with its hash: %+v", inBundle, res.Bundle.Manifest.Files)
		}
	}
	meta, err := os.ReadFile(filepath.Join(res.Bundle.Path, JSONName))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Numbers Numbers
		Files   []Written
	}
	if err := json.Unmarshal(meta, &got); err != nil || got.Numbers != res.Report.Numbers || len(got.Files) != 2 || got.Files[0].Path != "" {
		t.Fatalf("report.json: %+v %v", got, err)
	}
	if err := evidence.VerifyChain(context.Background(), chain, root); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Job{Builder: b, Formats: []string{"docx"}}).Run(context.Background(), november); err == nil {
		t.Error("format docx accepted")
	}
}
