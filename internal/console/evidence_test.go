package console

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

// writeBundle writes the evidence bundle of incident inc's snapshot step
// (inc-2) under root, as the responder's snapshot does: its files and a
// manifest listing them.
func writeBundle(t *testing.T, root, inc string) string {
	t.Helper()
	id := evidence.BundleID(inc + "-2")
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event_id":"e1"}` + "\n")
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	m := evidence.Manifest{V: 1, BundleID: id, Seq: 1, AgentID: "billing-bot", AnomalyID: "an-1", IncidentID: inc, CreatedMs: 1, FromMs: 1, ToMs: 2,
		Events: 1, MaxEvents: 10, Files: []evidence.File{{Name: "events.jsonl", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body))}},
		PrevManifestSHA256: strings.Repeat("0", 64)}
	b, err := evidence.MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, evidence.ManifestJSON), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIncidentEvidence(t *testing.T) {
	root := t.TempDir()
	dir := writeBundle(t, root, "inc-1")
	f := newFixture()
	_ = f.audit.Append(t.Context(), audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "snapshot", StepID: "inc-1-2", IncidentID: "inc-1",
		AgentID: "billing-bot", Result: audit.ResultOK, Detail: "evidence bundle written"})
	srv := testServer(t, f, func(o *Options) { o.EvidenceDir = root })
	c := newClient(t, srv)
	c.signIn(secretRead)
	_, page := c.do("GET", "/console/incident?id=inc-1", nil, nil)
	if !strings.Contains(page, evidence.BundleID("inc-1-2")) || !strings.Contains(page, "1 files, <b class=\"ok\">verified</b>") {
		t.Fatalf("intact bundle not shown verified:\n%s", page)
	}
	// A file changed after the bundle was written.
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), []byte(`{"event_id":"forged"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, page = c.do("GET", "/console/incident?id=inc-1", nil, nil)
	if !strings.Contains(page, "does not verify") || !strings.Contains(page, "events.jsonl") {
		t.Fatalf("tampered bundle not reported:\n%s", page)
	}
}
