package respctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestKillSwitchEmbedded: in the embedded mode the command creates and
// removes kill_switch_file, and audits both.
func TestKillSwitchEmbedded(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(t)
	var out bytes.Buffer
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "on"}, &out); err == nil {
		t.Fatal("no kill_switch_file: want an error")
	}
	cfg.Responder.KillSwitchFile = filepath.Join(t.TempDir(), "STOP")
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "sideways"}, &out); err == nil {
		t.Fatal("unknown action accepted")
	}
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "on", Reason: "drill"}, &out); err != nil {
		t.Fatal(err)
	}
	if !revoke.FileSwitch(cfg.Responder.KillSwitchFile).Engaged() {
		t.Fatal("on: the file switch is not engaged")
	}
	out.Reset()
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "status"}, &out); err != nil || !strings.Contains(out.String(), "kill switch: engaged") {
		t.Fatalf("status: %q %v", out.String(), err)
	}
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "off"}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Responder.KillSwitchFile); !os.IsNotExist(err) {
		t.Fatalf("off: the file is still there (%v)", err)
	}
	recs := auditRecords(t, cfg)
	var details []string
	for _, r := range recs {
		if r.Action == "kill_switch" {
			details = append(details, r.Detail)
		}
	}
	// Both records can carry the same millisecond, which orders them no
	// further: each must be there once.
	slices.Sort(details)
	if len(details) != 2 || !strings.HasPrefix(details[0], "kill switch disengaged") || !strings.HasPrefix(details[1], "kill switch engaged") {
		t.Fatalf("kill switch audit records %q", details)
	}
}

func auditRecords(t *testing.T, cfg config.Config) []audit.Record {
	t.Helper()
	al, closeFn, err := respsvc.OpenAudit(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	recs, err := al.Query(context.Background(), audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestIntegrationGlobalCommands: in the distributed mode `responder
// kill-switch`, `responder silence` and `responder restore` write the
// global table on the real broker, and a responder instance following it
// (another reader of the table) sees each within 2 s.
func TestIntegrationGlobalCommands(t *testing.T) {
	ctx := context.Background()
	k := itest.PlainKafka(t)
	chAddr := itest.ClickHouseAddr(t)
	suffix := itest.RandHex(4)
	topic, db := "it-respctl-"+suffix+".responder-global", "it_respctl_"+suffix
	k.DeleteTopicsAfter(t, topic)
	itest.DropDatabaseAfter(t, chAddr, db)
	cfg := embeddedConfig(t)
	cfg.Kafka.Brokers, cfg.Kafka.ResponderGlobalTopic = k.Brokers, topic
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database = chAddr, db
	var out bytes.Buffer
	// The first command creates the topic (kafka.create_topics).
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "status"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kill switch (global table): disengaged") {
		t.Fatalf("status on a new table: %q", out.String())
	}
	sec, err := kafka.Connect(ctx, cfg.Kafka, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules, table, err := global.Open(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic},
		global.Options{Budget: 5, Interval: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	within := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: not seen by the running instance within 2s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: seen after %s", what, time.Since(start))
	}

	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "on", Reason: "drill"}, &out); err != nil {
		t.Fatal(err)
	}
	within("kill switch on", rules.Switch.Engaged)
	if st := rules.Switch.State(); st.Reason != "drill" || !strings.HasPrefix(st.By, "cli:") {
		t.Errorf("switch record %+v", st)
	}
	if err := KillSwitch(ctx, cfg, nil, KillSwitchOptions{Action: "off"}, &out); err != nil {
		t.Fatal(err)
	}
	within("kill switch off", func() bool { return !rules.Switch.Engaged() })

	if err := SilenceAdd(ctx, cfg, SilenceAddOptions{Matchers: `agent_id="agent-9"`, For: time.Hour, Comment: "drill"}, &out); err != nil {
		t.Fatal(err)
	}
	within("silence", func() bool {
		return len(rules.Silences.Match(map[string]string{"agent_id": "agent-9"}, time.Now())) == 1
	})

	// A revocation recorded by an instance, restored from the command line.
	key := revoke.Key{Adapter: "denylist", CredentialID: "cred-9", IncidentID: "inc-9"}
	if err := rules.Ledger.Put(ctx, revoke.Record{Key: key, AgentID: "agent-9", State: revoke.StateRevoked, Status: revoke.StatusRevoked, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Restore(ctx, cfg, nil, RestoreOptions{IncidentID: "inc-9", CredentialID: "cred-9", Reason: "drill"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "denylist: ") {
		t.Errorf("restore printed %q", out.String())
	}
	within("restore", func() bool {
		r, found, err := rules.Ledger.Get(ctx, key)
		return err == nil && found && r.State == revoke.StateRestored
	})
	var actions []string
	for _, r := range auditRecords(t, cfg) {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"kill_switch", "silence", "restore"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("no %s audit record in %v", want, actions)
		}
	}
}
