package revoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
)

// memTable is a global table in memory: one log that every follower
// applies in order before Put returns (global.MemTable imports this
// package, so it cannot be used here).
type memTable struct {
	mu        sync.Mutex
	log       [][2][]byte
	followers []func(key string, value []byte)
	fail      error
	// failDelete, if set, says which deletes fail; targeted holds every
	// key a delete was asked for, failed or not.
	failDelete func(key string) bool
	targeted   map[string]bool
}

func (m *memTable) follow(f func(key string, value []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.log {
		f(string(r[0]), r[1])
	}
	m.followers = append(m.followers, f)
}

func (m *memTable) Put(_ context.Context, key string, value []byte) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	m.log = append(m.log, [2][]byte{[]byte(key), value})
	for _, f := range m.followers {
		f(key, value)
	}
	return int64(len(m.log) - 1), nil
}

func (m *memTable) PutRetryAs(ctx context.Context, key string, value []byte, _ func(n int) string) (int64, error) {
	return m.Put(ctx, key, value)
}

func (m *memTable) Delete(ctx context.Context, key string) (int64, error) {
	m.mu.Lock()
	if m.targeted == nil {
		m.targeted = map[string]bool{}
	}
	m.targeted[key] = true
	fail := m.failDelete != nil && m.failDelete(key)
	m.mu.Unlock()
	if fail {
		return 0, errors.New("delete failed")
	}
	return m.Put(ctx, key, nil)
}

func claimRecord(t *testing.T, at time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(claimValue{At: at})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustClaims(t *testing.T, tb Table, limit int, every time.Duration, now func() time.Time) *Claims {
	t.Helper()
	c, err := NewClaims(tb, limit, every, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClaimsFoldTable walks hand-made logs through the fold, clocks out of
// order included.
func TestClaimsFoldTable(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	type rec struct {
		id     string
		at     time.Time
		refund bool
	}
	tests := []struct {
		name  string
		limit int
		log   []rec
		want  []string // winners still in the window of the latest claim
	}{
		{"under the limit", 3, []rec{{"a", m(0), false}, {"b", m(1), false}}, []string{"a", "b"}},
		{"at the limit", 2, []rec{{"a", m(0), false}, {"b", m(1), false}, {"c", m(2), false}}, []string{"a", "b"}},
		{"window passes", 1, []rec{{"a", m(0), false}, {"b", m(10), false}}, []string{"b"}},
		{"just inside the window", 1, []rec{{"a", m(0), false}, {"b", m(9), false}}, []string{"a"}},
		// b's clock is 15 minutes behind a's: it counts at a's time, so it
		// does not sneak in beside a.
		{"clock behind counts at the latest time", 1, []rec{{"a", m(20), false}, {"b", m(5), false}}, []string{"a"}},
		{"clock behind, later claim after the window", 1, []rec{{"a", m(20), false}, {"b", m(5), false}, {"c", m(30), false}}, []string{"c"}},
		{"refund makes room", 1, []rec{{"a", m(0), false}, {"a", m(1), true}, {"b", m(2), false}}, []string{"b"}},
		{"refund of a loser changes nothing", 1, []rec{{"a", m(0), false}, {"b", m(1), false}, {"b", m(1), true}, {"c", m(2), false}}, []string{"a"}},
		// A produce retried after a lost answer leaves the claim twice:
		// under the retry's key, as Claim writes it, or (written by
		// something else) under the same key.
		{"a retry's copy counts once", 2, []rec{{"a", m(0), false}, {"a~1", m(0), false}, {"b", m(1), false}}, []string{"a", "b"}},
		{"a claim whose first try did not land", 2, []rec{{"a~1", m(0), false}, {"a~2", m(0), false}, {"b", m(1), false}}, []string{"a", "b"}},
		{"a claim written twice under one key counts once", 2, []rec{{"a", m(0), false}, {"a", m(0), false}, {"b", m(1), false}}, []string{"a", "b"}},
		{"a refund's copy is a refund", 1, []rec{{"a", m(0), false}, {"a", m(1), true}, {"a~1", m(12), true}, {"b", m(12), false}}, []string{"b"}},
		{"zero budget", 0, []rec{{"a", m(0), false}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustClaims(t, &memTable{}, tt.limit, 10*time.Minute, nil)
			for _, r := range tt.log {
				key := ClaimPrefix + r.id
				if r.refund {
					id, n, retry := strings.Cut(r.id, copySep)
					key = ClaimPrefix + id + refundSuffix
					if retry {
						key += copySep + n
					}
				}
				c.Apply(key, claimRecord(t, r.at))
			}
			if got := c.Winners(); !slices.Equal(got, tt.want) {
				t.Fatalf("winners %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClaimsFoldDeterministic: random logs of claims whose clocks jump
// back and forth fold to the same outcome in every replica and on every
// replay, and no span of one interval of effective time holds more than
// the limit's winners.
func TestClaimsFoldDeterministic(t *testing.T) {
	const limit, every = 3, 10 * time.Minute
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var keys []string
		var vals [][]byte
		for i := range 60 {
			// Three claimers, each with its own skew, claiming over an hour.
			skew := time.Duration(i%3-1) * 4 * time.Minute
			at := t0.Add(time.Duration(rng.IntN(60))*time.Minute + skew)
			keys = append(keys, fmt.Sprintf("%sr%d-%d", ClaimPrefix, round, i))
			vals = append(vals, claimRecord(t, at))
			if rng.IntN(10) == 0 && i > 0 {
				keys = append(keys, fmt.Sprintf("%sr%d-%d%s", ClaimPrefix, round, rng.IntN(i), refundSuffix))
				vals = append(vals, claimRecord(t, at))
			}
		}
		outcome := func() ([]string, []time.Time) {
			c := mustClaims(t, &memTable{}, limit, every, nil)
			var won []string
			var eff []time.Time
			for i := range keys {
				c.Apply(keys[i], vals[i])
				if ws := c.Winners(); len(ws) > 0 && ws[len(ws)-1] == keys[i][len(ClaimPrefix):] {
					won = append(won, keys[i])
					eff = append(eff, c.last)
				}
			}
			return won, eff
		}
		a, eff := outcome()
		b, _ := outcome()
		if !slices.Equal(a, b) {
			t.Fatalf("round %d: two replays disagree:\n%v\n%v", round, a, b)
		}
		for i := range eff {
			if i > 0 && eff[i].Before(eff[i-1]) {
				t.Fatalf("round %d: effective times go back: %s after %s", round, eff[i], eff[i-1])
			}
			n := 0
			for j := i; j < len(eff) && eff[j].Sub(eff[i]) < every; j++ {
				n++
			}
			// Refunds may let one more in; count only unrefunded winners.
			if n > limit+refundsIn(keys, a[i:i+min(n, len(a)-i)]) {
				t.Fatalf("round %d: %d winners within %s from %s (limit %d)", round, n, every, eff[i], limit)
			}
		}
	}
}

// refundsIn counts the claims of won that were refunded in keys.
func refundsIn(keys, won []string) int {
	n := 0
	for _, w := range won {
		if slices.Contains(keys, w+refundSuffix) {
			n++
		}
	}
	return n
}

// TestClaimsAcrossInstances: three replicas of the table claim
// concurrently; exactly the limit wins, and every replica agrees.
func TestClaimsAcrossInstances(t *testing.T) {
	tb := &memTable{}
	clock := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	var cs []*Claims
	for range 3 {
		c := mustClaims(t, tb, 5, 10*time.Minute, clock.Now)
		tb.follow(func(k string, v []byte) { c.Apply(k, v) })
		cs = append(cs, c)
	}
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, ok, err := cs[i%3].Claim(context.Background(), fmt.Sprint("instance-", i%3))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 5 {
		t.Fatalf("%d claims won, want 5", won)
	}
	for i, c := range cs {
		if !slices.Equal(c.Winners(), cs[0].Winners()) || c.Remaining() != 0 {
			t.Fatalf("replica %d: winners %v remaining %d; replica 0: %v", i, c.Winners(), c.Remaining(), cs[0].Winners())
		}
	}
	// A replica started now re-counts the budget from the table.
	late := mustClaims(t, tb, 5, 10*time.Minute, clock.Now)
	tb.follow(func(k string, v []byte) { late.Apply(k, v) })
	if late.Remaining() != 0 || !slices.Equal(late.Winners(), cs[0].Winners()) {
		t.Fatalf("late replica: remaining %d winners %v", late.Remaining(), late.Winners())
	}
	clock.Add(10 * time.Minute)
	if late.Remaining() != 5 {
		t.Fatalf("after the interval: remaining %d, want 5", late.Remaining())
	}
}

// TestGuardWithClaims: a Guard over Claims spends one claim per automatic
// revocation, sends the rest to approval, refunds one the gateway found
// done, and does not count manual ones; a TableSwitch stops automatic
// ones on every replica.
func TestGuardWithClaims(t *testing.T) {
	ctx := context.Background()
	tb := &memTable{}
	var guards []*Guard
	var switches []*TableSwitch
	dir := t.TempDir()
	for i := range 2 {
		c := mustClaims(t, tb, 1, time.Hour, nil)
		l := NewTableLedger(tb, LedgerOptions{})
		sw := NewTableSwitch(tb)
		tb.follow(func(k string, v []byte) {
			c.Apply(k, v)
			if err := l.Apply(k, v); err != nil {
				t.Error(err)
			}
			sw.Apply(k, v)
		})
		dl, err := NewDenylist(DenylistOptions{Path: filepath.Join(dir, fmt.Sprint("deny", i))})
		if err != nil {
			t.Fatal(err)
		}
		g, err := NewGuard(dl, Options{Ledger: l, Claims: c, Kill: sw, Instance: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		guards, switches = append(guards, g), append(switches, sw)
	}
	auto := func(cred string) Target {
		return Target{CredentialID: cred, AgentID: "agent-" + cred, IncidentID: "inc-" + cred, Origin: Automatic}
	}
	if res, err := guards[0].Revoke(ctx, auto("c1")); err != nil || res.Status != StatusRevoked {
		t.Fatalf("first automatic revocation: %+v, %v", res, err)
	}
	var ae *ApprovalError
	if _, err := guards[1].Revoke(ctx, auto("c2")); !errors.As(err, &ae) || ae.Reason != ReasonBudget {
		t.Fatalf("second automatic revocation on the other instance: %v, want a budget approval", err)
	}
	man := auto("c3")
	man.Origin = Manual
	if _, err := guards[1].Revoke(ctx, man); err != nil {
		t.Fatalf("manual revocation past the budget: %v", err)
	}
	// Instance 1 sees instance 0's revocation in the ledger.
	rec, found, err := guards[1].ledger.Get(ctx, guards[0].key(auto("c1")))
	if err != nil || !found || rec.State != StateRevoked {
		t.Fatalf("ledger on instance 1: %+v %v %v", rec, found, err)
	}
	if err := switches[1].Set(ctx, SwitchState{Engaged: true, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if !switches[0].Engaged() {
		t.Fatal("kill switch set on instance 1 is not engaged on instance 0")
	}
	man.CredentialID, man.IncidentID = "c4", "inc-c4"
	if _, err := guards[0].Revoke(ctx, man); !errors.Is(err, ErrKillSwitch) {
		t.Fatalf("manual revocation with the switch engaged: %v", err)
	}
}

// TestTableLedgerSealsRestoreMaterial: the Kong key kept for restore is in
// the table only encrypted, and a replica with the key reads it back.
func TestTableLedgerSealsRestoreMaterial(t *testing.T) {
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	tb := &memTable{}
	w := NewTableLedger(tb, LedgerOptions{Key: id})
	r := NewTableLedger(tb, LedgerOptions{Key: id})
	nokey := NewTableLedger(tb, LedgerOptions{})
	for _, l := range []*TableLedger{w, r, nokey} {
		tb.follow(func(k string, v []byte) {
			if err := l.Apply(k, v); err != nil {
				t.Error(err)
			}
		})
	}
	secret := []byte(`{"key":"kong-secret-key-value"}`)
	k := Key{Adapter: "kong", CredentialID: "cred-1", IncidentID: "inc-1"}
	if err := w.Put(ctx, Record{Key: k, State: StateRevoked, Saved: secret}); err != nil {
		t.Fatal(err)
	}
	for _, e := range tb.log {
		if bytes.Contains(e[1], []byte("kong-secret-key-value")) {
			t.Fatalf("the table holds the key in plain text: %s", e[1])
		}
	}
	got, found, err := r.Get(ctx, k)
	if err != nil || !found || !bytes.Equal(got.Saved, secret) {
		t.Fatalf("replica with the key: %+v %v %v", got, found, err)
	}
	if _, _, err := nokey.Get(ctx, k); !errors.Is(err, ErrLedgerKey) {
		t.Fatalf("replica without the key: %v, want ErrLedgerKey", err)
	}
	got.State = StateRestored
	if err := r.Put(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := w.Get(ctx, k); got.State != StateRestored {
		t.Fatalf("restore made on one replica: the other sees %s", got.State)
	}
	if err := w.Apply(LedgerKey(Key{Adapter: "x"}), []byte(`{"adapter":"kong","credential_id":"c","incident_id":"i","state":"revoked"}`)); err == nil {
		t.Fatal("a record under another key's name was applied")
	}
}

// TestClaimsForgetSeenAfterTwoIntervals: a claim written twice counts once
// while it is within two intervals of the latest claim, and the fold
// forgets it after that (its memory stays bounded).
func TestClaimsForgetSeenAfterTwoIntervals(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c := mustClaims(t, &memTable{}, 100, 10*time.Minute, nil)
	for i := range 50 {
		c.Apply(ClaimPrefix+fmt.Sprintf("c%d", i), claimRecord(t, t0.Add(time.Duration(i)*time.Minute)))
	}
	// The 49th minute: claims of minutes 29 to 49 are within two intervals.
	if n := len(c.seen); n != 21 {
		t.Errorf("%d claims remembered, want 21 (those within 20 minutes of the latest)", n)
	}
	if len(c.seenOrder) != len(c.seen) {
		t.Errorf("order of %d for %d remembered", len(c.seenOrder), len(c.seen))
	}
	folded := c.folded
	c.Apply(ClaimPrefix+"c45", claimRecord(t, t0.Add(45*time.Minute)))
	c.Apply(ClaimPrefix+"c44~1", claimRecord(t, t0.Add(44*time.Minute)))
	if c.folded != folded {
		t.Error("a claim written again within two intervals was counted again")
	}
	c.Apply(ClaimPrefix+"c3", claimRecord(t, t0.Add(3*time.Minute)))
	if c.folded != folded+1 {
		t.Error("a claim id long forgotten was not folded as a new claim")
	}
}

// TestGuardWritesBeforeTheChangeOnly: an automatic revocation through Kong
// writes three records to the global table (its budget claim, its pending
// record holding the sealed key, its revoked record); a credential already
// gone spends no unit and writes only its outcome; a read that fails
// before the change leaves no unit spent and nothing pending.
func TestGuardWritesBeforeTheChangeOnly(t *testing.T) {
	ctx := context.Background()
	tb := &memTable{}
	c := mustClaims(t, tb, 10, time.Hour, nil)
	l := NewTableLedger(tb, LedgerOptions{Key: testLedgerKey})
	tb.follow(func(k string, v []byte) {
		c.Apply(k, v)
		if err := l.Apply(k, v); err != nil {
			t.Error(err)
		}
	})
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "live", "the-key")
	fk.add("bot", "flaky", "other-key")
	g, err := NewGuard(env.kong(t, fk), Options{Ledger: l, Claims: c, Instance: "0", Metrics: env.m})
	if err != nil {
		t.Fatal(err)
	}
	auto := func(cred string) Target {
		return Target{CredentialID: cred, Consumer: "bot", AgentID: "agent-" + cred, IncidentID: "inc-" + cred, Origin: Automatic}
	}
	keys := func(from int) []string {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		var out []string
		for _, r := range tb.log[from:] {
			k := string(r[0])
			switch {
			case strings.HasPrefix(k, ClaimPrefix) && strings.HasSuffix(k, refundSuffix):
				out = append(out, "refund")
			case strings.HasPrefix(k, ClaimPrefix):
				out = append(out, "claim")
			case strings.HasPrefix(k, LedgerPrefix):
				var d diskRecord
				if err := json.Unmarshal(r[1], &d); err != nil {
					t.Fatal(err)
				}
				s := "ledger " + string(d.State)
				if len(d.SavedAge) > 0 && len(d.Saved) == 0 {
					s += " sealed"
				}
				out = append(out, s)
			}
		}
		return out
	}

	res, err := g.Revoke(ctx, auto("live"))
	if err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke(live) = %+v, %v", res, err)
	}
	if got, want := keys(0), []string{"claim", "ledger pending sealed", "ledger revoked sealed"}; !slices.Equal(got, want) {
		t.Fatalf("records of a revocation: %q; want %q", got, want)
	}
	if c.Remaining() != 9 {
		t.Fatalf("Remaining after one revocation = %d; want 9", c.Remaining())
	}

	n := len(tb.log)
	res, err = g.Revoke(ctx, auto("gone"))
	if err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke(gone) = %+v, %v", res, err)
	}
	if got, want := keys(n), []string{"ledger revoked"}; !slices.Equal(got, want) {
		t.Fatalf("records of a credential already gone: %q; want %q", got, want)
	}
	if c.Remaining() != 9 {
		t.Fatalf("Remaining after a credential already gone = %d; want 9", c.Remaining())
	}

	n = len(tb.log)
	fk.mu.Lock()
	fk.getCodes = []int{http.StatusForbidden}
	fk.mu.Unlock()
	if _, err := g.Revoke(ctx, auto("flaky")); err == nil {
		t.Fatal("Revoke with Kong's read refused: no error")
	}
	if got := keys(n); len(got) != 0 {
		t.Fatalf("records of a revocation whose read failed: %q; want none", got)
	}
	if _, found, _ := l.Get(ctx, g.key(auto("flaky"))); found {
		t.Fatal("a revocation whose read failed left a ledger record")
	}
	if c.Remaining() != 9 {
		t.Fatalf("Remaining after a failed read = %d; want 9", c.Remaining())
	}
	if _, ok := fk.has("flaky"); !ok {
		t.Fatal("flaky was deleted although its read failed")
	}
	if res, err := g.Revoke(ctx, auto("flaky")); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke(flaky) again = %+v, %v", res, err)
	}
	if c.Remaining() != 8 {
		t.Fatalf("Remaining after the second revocation = %d; want 8", c.Remaining())
	}
}
