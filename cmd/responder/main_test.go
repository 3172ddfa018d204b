package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
)

// TestCommandLine runs the responder's command line in-process and checks
// exit codes, suggestions and that help shows only a command's own flags.
func TestCommandLine(t *testing.T) {
	state := "--responder.state_dir=" + t.TempDir()
	key := filepath.Join(t.TempDir(), "checkpoint.key")
	ledgerKey := filepath.Join(t.TempDir(), "ledger.key")
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"--help"}, Code: 0, Out: "run-playbook"},
		{Args: []string{"help", "silence"}, Code: 0, Out: "expire"},
		{Args: []string{"silence", "add", "--help"}, Code: 0, Out: "--match", NotOut: "--expired"},
		{Args: []string{"audit", "--help"}, Code: 0, Out: "--agent", NotOut: "--responder.state_dir"},
		{Args: []string{"silence", "ad"}, Code: 2, Err: `did you mean "add"?`},
		{Args: []string{"silence"}, Code: 2, Err: "needs a subcommand: add, expire, list"},
		{Args: []string{"audti"}, Code: 2, Err: `did you mean "audit"?`},
		{Args: []string{"audit", "--agnet=x"}, Code: 2, Err: "did you mean --agent?"},
		{Args: []string{"audit", "--from=yesterday"}, Code: 2, Err: "--from"},
		{Args: []string{"run-playbook", "shadow-agent"}, Code: 2, Err: "needs --agent"},
		{Args: []string{"outbox", "dismiss", "k1"}, Code: 2, Err: "needs --reason"},
		{Args: []string{"silence", "expire"}, Code: 2, Err: "needs the silence ID"},
		{Args: []string{"run"}, Code: 2, Err: "kafka.brokers is empty"},
		{Args: []string{"incidents", state}, Code: 0, Out: "INCIDENT"},
		{Args: []string{"silence", "list", state}, Code: 0},
		{Args: []string{"keygen"}, Code: 2, Err: "needs --out"},
		{Args: []string{"keygen", "--out=" + key}, Code: 0, Out: "mode 0600"},
		{Args: []string{"keygen", "--out=" + key}, Code: 1, Err: "never overwritten"},
		{Args: []string{"ledger-keygen"}, Code: 2, Err: "needs --out"},
		{Args: []string{"ledger-keygen", "--out=" + ledgerKey}, Code: 0, Out: "mode 0600"},
		{Args: []string{"ledger-keygen", "--out=" + ledgerKey}, Code: 1, Err: "never overwritten"},
		{Args: []string{"incidents", state, "--responder.ledger_key_file=" + ledgerKey}, Code: 0, Out: "INCIDENT"},
		{Args: []string{"incidents", state, "--responder.ledger_key_file=" + key + ".pub"}, Code: 2, Err: "responder.ledger_key: is not an age X25519 identity"},
		{Args: []string{"ledger-reseal", state}, Code: 2, Err: "responder.ledger_key"},
		{Args: []string{"ledger-reseal", state, "--responder.ledger_key_file=" + ledgerKey}, Code: 0, Out: "nothing to reseal"},
		{Args: []string{"verify", "--help"}, Code: 0, Out: "--public-key"},
		{Args: []string{"verify", state, "--public-key=" + key + ".pub"}, Code: 0, Out: "checkpoints: none yet"},
	})
}

// TestAuditActionAsk: `responder audit --action ask` lists the questions
// put to the visibility commands and API, and only them.
func TestAuditActionAsk(t *testing.T) {
	dir := t.TempDir()
	fs, err := audit.OpenFileStore(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UnixMilli()
	if err := fs.Append(context.Background(),
		audit.Record{ID: "q1", AtMs: at, Actor: audit.Actor{Kind: audit.ActorAPI, TokenName: "auditor"}, Action: audit.ActionAsk,
			Result: audit.ResultOK, Detail: `access tag="pii" span=2026-03-15..2026-03-16`},
		audit.Record{ID: "r1", AtMs: at, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", AgentID: "cs-1", Result: audit.ResultOK}); err != nil {
		t.Fatal(err)
	}
	d := "--responder.state_dir=" + dir
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"audit", d, "--action", "ask"}, Out: `api:auditor  ask`, NotOut: "revoke"},
		{Args: []string{"audit", d, "--action", "ask"}, Out: `access tag="pii" span=2026-03-15..2026-03-16`},
		{Args: []string{"audit", d, "--action", "revoke"}, Out: "revoke", NotOut: "api:auditor"},
	})
}
