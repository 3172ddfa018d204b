package respctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

func TestLedgerReseal(t *testing.T) {
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Responder.StateDir = t.TempDir()
	var out bytes.Buffer
	if err := LedgerReseal(cfg, &out); err == nil || !strings.Contains(err.Error(), "responder.ledger_key") {
		t.Fatalf("without a key: %v", err)
	}
	id, _ := age.GenerateX25519Identity()
	cfg.Responder.LedgerKey = id.String()
	if err := LedgerReseal(cfg, &out); err != nil || !strings.Contains(out.String(), "no ledger") {
		t.Fatalf("without a ledger: %v, %q", err, out.String())
	}
	rec := revoke.Record{Key: revoke.Key{Adapter: "kong", CredentialID: "c", IncidentID: "i"}, State: revoke.StateRevoked,
		Saved: []byte(`{"id":"c","key":"plain-kong-key-1234"}`), StartedAt: time.Unix(1, 0).UTC()}
	line, _ := json.Marshal(rec)
	path := filepath.Join(cfg.Responder.StateDir, respond.LedgerFile)
	if err := os.WriteFile(path, append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.OpenFile(filepath.Join(cfg.Responder.StateDir, respond.OutboxFile), outbox.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := LedgerReseal(cfg, &out); err == nil || !strings.Contains(err.Error(), "a responder is running") {
		t.Fatalf("beside a running responder: %v", err)
	}
	ob.Close()
	out.Reset()
	if err := LedgerReseal(cfg, &out); err != nil || !strings.Contains(out.String(), "1 records") {
		t.Fatalf("reseal: %v, %q", err, out.String())
	}
	raw, _ := os.ReadFile(path)
	var d struct {
		Saved    []byte `json:"saved"`
		SavedAge []byte `json:"saved_age"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(raw), &d); err != nil || d.Saved != nil || len(d.SavedAge) == 0 {
		t.Fatalf("after reseal (%v):\n%s", err, raw)
	}
}
