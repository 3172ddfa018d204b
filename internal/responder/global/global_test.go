package global

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

// instances opens n Rules on one in-memory table, as n responders on one
// topic.
func instances(t *testing.T, n int) (*MemTable, []*Rules) {
	t.Helper()
	tb := NewMemTable()
	var rs []*Rules
	for range n {
		r, err := NewRules(tb, Options{Budget: 2, Interval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		tb.Follow(func(k string, v []byte) {
			if !r.Apply(k, v) {
				t.Errorf("key %q not taken", k)
			}
		})
		rs = append(rs, r)
	}
	return tb, rs
}

func TestRulesDenylistAcrossInstances(t *testing.T) {
	ctx := context.Background()
	_, rs := instances(t, 2)
	put := func(r *Rules, cred, inc string, st revoke.State) {
		t.Helper()
		if err := r.Ledger.Put(ctx, revoke.Record{Key: revoke.Key{Adapter: "denylist", CredentialID: cred, IncidentID: inc}, State: st, StartedAt: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	body0, etag0 := rs[0].DenylistText("denylist")
	if len(body0) != 0 {
		t.Fatalf("empty ledger serves %q", body0)
	}
	put(rs[0], "cred-b", "inc-1", revoke.StateRevoked)
	put(rs[1], "cred-a", "inc-2", revoke.StatePending) // not recorded as done: not listed yet
	put(rs[1], "cred-c", "inc-3", revoke.StateRevoked)
	put(rs[0], "cred-c", "inc-4", revoke.StateRevoked)
	put(rs[0], "cred-c", "inc-4", revoke.StateRestored) // still revoked in inc-3
	put(rs[1], "cred-d", "inc-5", revoke.StateRestored)
	put(rs[1], "key\nwith newline", "inc-6", revoke.StateRevoked)
	b0, e0 := rs[0].DenylistText("denylist")
	b1, e1 := rs[1].DenylistText("denylist")
	if string(b0) != "cred-b\ncred-c\n" || string(b1) != string(b0) || e0 != e1 || e0 == etag0 {
		t.Fatalf("instance 0 serves %q (%s), instance 1 %q (%s), empty list's tag %s", b0, e0, b1, e1, etag0)
	}
	if again, e := rs[0].DenylistText("denylist"); string(again) != string(b0) || e != e0 {
		t.Fatalf("unchanged ledger: %q %s", again, e)
	}
	if got := rs[1].Restored("denylist"); !slices.Equal(got, []string{"cred-d"}) {
		t.Fatalf("restored ids %v, want [cred-d]", got)
	}
	if got, _ := rs[0].DenylistText("kong"); len(got) != 0 {
		t.Fatalf("another adapter's list: %q", got)
	}
}

func TestMirrorDenylistFollowsTheLedger(t *testing.T) {
	ctx := context.Background()
	_, rs := instances(t, 2)
	path := filepath.Join(t.TempDir(), "deny.txt")
	if err := os.WriteFile(path, []byte("# operators' own\nmanual-1\ncred-gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dl, err := revoke.NewDenylist(revoke.DenylistOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rs[1].MirrorDenylist(mctx, dl, "denylist", nil, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	k := revoke.Key{Adapter: "denylist", CredentialID: "cred-x", IncidentID: "inc-1"}
	if err := rs[0].Ledger.Put(ctx, revoke.Record{Key: k, State: revoke.StateRevoked}); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].Ledger.Put(ctx, revoke.Record{Key: revoke.Key{Adapter: "denylist", CredentialID: "cred-gone", IncidentID: "inc-0"}, State: revoke.StateRestored}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, path, "# operators' own\nmanual-1\ncred-x\n")
	if err := rs[0].Ledger.Put(ctx, revoke.Record{Key: k, State: revoke.StateRestored}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, path, "# operators' own\nmanual-1\n")
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("file %q, want %q", b, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRulesApplyCountsBadRecords(t *testing.T) {
	_, rs := instances(t, 1)
	r := rs[0]
	valid := `{"at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	for _, rec := range []struct{ key, value string }{
		{revoke.ClaimPrefix + "ok", valid},
		{silence.TablePrefix + "x", "{"},
		{revoke.LedgerPrefix + "x", "{"},
		{revoke.SwitchKey, "{"},
		{revoke.ClaimPrefix + "x", "{"},
	} {
		if !r.Apply(rec.key, []byte(rec.value)) {
			t.Errorf("%s: not taken", rec.key)
		}
	}
	if r.Apply("c/command-1", []byte("{}")) {
		t.Error("a command's key was taken by the rules")
	}
	// Fail closed: an unreadable switch record engages it; an unreadable
	// claim counts as won at the latest claim's time, so it never makes
	// room in the budget.
	if !r.Switch.Engaged() {
		t.Error("an unreadable kill switch record left the switch disengaged")
	}
	if got := r.Claims.Remaining(); got != 0 {
		t.Errorf("budget remaining %d after a claim and an unreadable one (budget 2), want 0", got)
	}
	if len(r.Silences.List(true)) != 0 {
		t.Error("an unreadable silence record added a silence")
	}
}

// FuzzRulesApply: no record, however malformed, panics or adds a silence
// that mutes everything.
func FuzzRulesApply(f *testing.F) {
	for _, s := range []string{"s/a", "k/switch", "b/x", "b/x/r", "l/abc", "c/1"} {
		f.Add(s, []byte(`{"silence":{"id":"a","matchers":[{"name":"agent_id","type":"=~","value":".*"}]}}`))
		f.Add(s, []byte(`{"at":"2026-01-01T00:00:00Z"}`))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		r, err := NewRules(NewMemTable(), Options{Budget: 1, Interval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		r.Apply(key, value)
		now := time.Now()
		if got := r.Silences.Match(map[string]string{}, now); len(got) > 0 && strings.HasPrefix(key, silence.TablePrefix) {
			t.Fatalf("record %q %q made a silence that mutes an anomaly with no labels", key, value)
		}
	})
}

// TestRulesSweepBudgetClaims: Run deletes, on its ticker, the budget
// claims that lie before an interval-long pause more than two intervals
// back, counts them, and every instance drops them; an instance restored
// from the compacted topic counts the same budget.
func TestRulesSweepBudgetClaims(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }
	tb := NewMemTable()
	reg := prometheus.NewRegistry()
	var rs []*Rules
	for i := range 2 {
		o := Options{Budget: 2, Interval: 10 * time.Minute, Now: clock, SweepEvery: 10 * time.Millisecond}
		if i == 0 {
			o.Metrics = reg
		}
		r, err := NewRules(tb, o)
		if err != nil {
			t.Fatal(err)
		}
		tb.Follow(func(k string, v []byte) { r.Apply(k, v) })
		rs = append(rs, r)
	}
	for _, at := range []time.Duration{0, time.Minute, 2 * time.Minute, 40 * time.Minute} {
		set(at)
		if _, _, err := rs[1].Claims.Claim(ctx, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rs[1].Sweep(ctx); err != nil || n != 3 {
		t.Fatalf("sweep: %d, %v; want the 3 claims before the pause", n, err)
	}
	for _, at := range []time.Duration{41 * time.Minute, 75 * time.Minute} {
		set(at)
		if _, _, err := rs[1].Claims.Claim(ctx, "test"); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- rs[0].Run(rctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for rs[0].Claims.Kept() != 1 || rs[1].Claims.Kept() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("records kept after Run's sweeps: %d and %d, want 1 (the claim after the last pause)", rs[0].Claims.Kept(), rs[1].Claims.Kept())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := testutil.ToFloat64(rs[0].swept.WithLabelValues("budget_claim")); got != 2 {
		t.Fatalf("agentwatch_responder_global_swept_total on the instance that ran: %v, want 2", got)
	}
	// An instance started now reads the topic compacted: without the
	// deleted claims. It counts the same budget.
	compacted := NewMemTable()
	dead := map[string]bool{}
	for _, r := range tb.log {
		if r.value == nil {
			dead[r.key] = true
		}
	}
	for _, r := range tb.log {
		if !dead[r.key] {
			compacted.log = append(compacted.log, r)
		}
	}
	fresh, err := NewRules(compacted, Options{Budget: 2, Interval: 10 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	compacted.Follow(func(k string, v []byte) { fresh.Apply(k, v) })
	if len(compacted.log) != 1 || fresh.Claims.Remaining() != rs[0].Claims.Remaining() || !slices.Equal(fresh.Claims.Winners(), rs[0].Claims.Winners()) {
		t.Fatalf("restored from %d records: remaining %d winners %v; the instance that saw every claim: %d %v",
			len(compacted.log), fresh.Claims.Remaining(), fresh.Claims.Winners(), rs[0].Claims.Remaining(), rs[0].Claims.Winners())
	}
}
