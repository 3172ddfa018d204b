package silence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

var ctx = context.Background()

func TestStoreMatch(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{})
	now := clk.Now()
	agent := mustAdd(t, s, silenceFor("agent_id=cs-agent-1", now, time.Hour))
	fp := mustAdd(t, s, silenceFor(`agent_id=cs-agent-2,kind=behaviour,feature=response_bytes`, now, time.Hour))
	regex := mustAdd(t, s, silenceFor(`agent_id=~billing-.*,severity!~high|critical`, now, time.Hour))
	noOwner := mustAdd(t, s, silenceFor(`kind=drift,owner=""`, now, time.Hour))
	later := mustAdd(t, s, silenceFor("agent_id=cs-agent-3", now.Add(time.Hour), time.Hour))

	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		at     time.Duration
		want   []string
	}{
		{"agent", l("agent_id", "cs-agent-1", "kind", "drift", "owner", "x"), 0, []string{agent.ID}},
		{"other agent", l("agent_id", "cs-agent-11"), 0, nil},
		{"all matchers", l("agent_id", "cs-agent-2", "kind", "behaviour", "feature", "response_bytes", "owner", "x"), 0, []string{fp.ID}},
		{"one matcher differs", l("agent_id", "cs-agent-2", "kind", "behaviour", "feature", "client_4xx"), 0, nil},
		{"feature missing", l("agent_id", "cs-agent-2", "kind", "behaviour"), 0, nil},
		{"regex and not-regex", l("agent_id", "billing-7", "severity", "low", "owner", "x"), 0, []string{regex.ID}},
		{"not-regex excludes", l("agent_id", "billing-7", "severity", "critical", "owner", "x"), 0, nil},
		{"regex anchored", l("agent_id", "x-billing-7", "owner", "x"), 0, nil},
		{"missing severity is empty", l("agent_id", "billing-7"), 0, []string{regex.ID}},
		{"missing owner is empty", l("agent_id", "cs-agent-1", "kind", "drift"), 0, []string{agent.ID, noOwner.ID}},
		{"pending not yet", l("agent_id", "cs-agent-3"), 59 * time.Minute, nil},
		{"starts inclusive", l("agent_id", "cs-agent-3"), time.Hour, []string{later.ID}},
		{"ends exclusive", l("agent_id", "cs-agent-1"), time.Hour, nil},
		{"just before end", l("agent_id", "cs-agent-1"), time.Hour - time.Nanosecond, []string{agent.ID}},
	} {
		got := ids(s.Match(tc.labels, now.Add(tc.at)))
		slices.Sort(got) // the silences share CreatedAt, so Match orders them by random id
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Match = %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestAddPolicy(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{MaxDuration: 24 * time.Hour})
	now := clk.Now()

	got := mustAdd(t, s, Silence{Matchers: []Matcher{{"agent_id", "a", MatchEqual}}, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), CreatedBy: "U1"})
	if !got.StartsAt.Equal(now) || !got.CreatedAt.Equal(now) || got.Reason != ReasonManual || len(got.ID) != 32 {
		t.Fatalf("Add = %+v; want StartsAt and CreatedAt now, reason manual, a 32-char id", got)
	}
	if g, ok := s.Get(got.ID); !ok || g.ID != got.ID {
		t.Fatalf("Get(%s) = %+v, %v", got.ID, g, ok)
	}

	bad := func(sil Silence, want ...string) {
		t.Helper()
		_, err := s.Add(ctx, sil)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Add(%+v) = %v; want ErrInvalid", sil, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Add error %q does not mention %q", err, w)
			}
		}
	}
	base := silenceFor("agent_id=a", now, time.Hour)
	with := func(f func(*Silence)) Silence { c := clone(base); f(&c); return c }
	bad(with(func(s *Silence) { s.Matchers = nil }), "matchers: want 1 to 32, got 0")
	bad(with(func(s *Silence) { s.Matchers = []Matcher{{"agent_id", "a", MatchNotEqual}} }), "mute every anomaly")
	bad(with(func(s *Silence) { s.Matchers = []Matcher{{"agent_id", ".*", MatchRegexp}, {"owner", "", MatchEqual}} }), "mute every anomaly")
	bad(with(func(s *Silence) { s.Matchers = []Matcher{{"host", "a", MatchEqual}, {"agent_id", "(", MatchRegexp}} }), "matchers[0]", "matchers[1]")
	bad(with(func(s *Silence) { s.ID = "mine" }), "id: set by the store")
	bad(with(func(s *Silence) { s.EndsAt = time.Time{} }), "ends_at: required")
	bad(with(func(s *Silence) { s.StartsAt, s.EndsAt = now.Add(-2*time.Hour), now.Add(-time.Hour) }), "in the past")
	bad(with(func(s *Silence) { s.StartsAt, s.EndsAt = now.Add(2*time.Hour), now.Add(time.Hour) }), "must be after starts_at")
	bad(with(func(s *Silence) { s.EndsAt = now.Add(25 * time.Hour) }), "longer than the maximum 24h0m0s")
	bad(with(func(s *Silence) { s.CreatedBy = "" }), "created_by")
	bad(with(func(s *Silence) { s.Comment = strings.Repeat("x", MaxCommentLen+1) }), "comment")
	bad(with(func(s *Silence) { s.Reason = "because" }), "reason")
	bad(with(func(s *Silence) { s.ExpiredBy = "U1" }), "a new silence is not expired")
	bad(with(func(s *Silence) { s.CreatedBy, s.Matchers = "", nil }), "created_by", "matchers") // every problem at once

	if n := len(s.List(true)); n != 1 {
		t.Fatalf("refused silences were stored: List has %d", n)
	}
}

func TestExpire(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{})
	now := clk.Now()
	a := mustAdd(t, s, silenceFor("agent_id=a", now, time.Hour))
	clk.Add(time.Nanosecond) // List orders by CreatedAt
	p := mustAdd(t, s, silenceFor("agent_id=p", now.Add(time.Hour), time.Hour))
	labels := map[string]string{"agent_id": "a"}

	if _, err := s.Expire(ctx, "nope", "U9", time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Expire(missing) = %v; want ErrNotFound", err)
	}
	if _, err := s.Expire(ctx, a.ID, "", time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Expire without by = %v; want ErrInvalid", err)
	}
	clk.Add(10 * time.Minute)
	e, err := s.Expire(ctx, a.ID, "U9", time.Time{})
	if err != nil || !e.ExpiredAt.Equal(clk.Now()) || e.ExpiredBy != "U9" || e.State(clk.Now()) != StateExpired {
		t.Fatalf("Expire = %+v, %v; want expired now by U9", e, err)
	}
	if m := s.Match(labels, clk.Now()); len(m) != 0 {
		t.Fatalf("expired silence still matches: %v", ids(m))
	}
	if m := s.Match(labels, now); len(m) != 0 {
		t.Fatalf("expired silence matches at a time before its expiry: %v", ids(m))
	}
	// A retried expiry changes nothing.
	clk.Add(time.Minute)
	again, err := s.Expire(ctx, a.ID, "U10", time.Time{})
	if err != nil || !again.ExpiredAt.Equal(e.ExpiredAt) || again.ExpiredBy != "U9" {
		t.Fatalf("second Expire = %+v, %v; want the first expiry unchanged", again, err)
	}
	// A pending silence can be expired before it starts.
	if _, err := s.Expire(ctx, p.ID, "U9", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if m := s.Match(map[string]string{"agent_id": "p"}, now.Add(90*time.Minute)); len(m) != 0 {
		t.Fatalf("expired pending silence matches after its start: %v", ids(m))
	}
	if got := ids(s.List(false)); len(got) != 0 {
		t.Fatalf("List(false) = %v; want none", got)
	}
	if got := ids(s.List(true)); !slices.Equal(got, []string{a.ID, p.ID}) {
		t.Fatalf("List(true) = %v; want %v", got, []string{a.ID, p.ID})
	}
	// A silence that ran its course is expired without Expire.
	n := mustAdd(t, s, silenceFor("agent_id=n", clk.Now(), time.Minute))
	clk.Add(time.Minute)
	if got := ids(s.List(false)); len(got) != 0 {
		t.Fatalf("List(false) after EndsAt = %v; want none", got)
	}
	if e, err := s.Expire(ctx, n.ID, "U9", time.Time{}); err != nil || !e.ExpiredAt.IsZero() {
		t.Fatalf("Expire of an ended silence = %+v, %v; want it unchanged", e, err)
	}
}

func TestPersistence(t *testing.T) {
	clk := newClock()
	path := tempPath(t)
	s := open(t, path, clk, Options{})
	now := clk.Now()
	a := mustAdd(t, s, silenceFor(`agent_id=a,owner!="Jane Doe, Security",feature=~"resp.*"`, now, time.Hour))
	b := mustAdd(t, s, silenceFor("agent_id=b", now, 2*time.Hour))
	b, err := s.Expire(ctx, b.ID, "U2", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := s.AddWithKey(ctx, "slack:T1:trig:1", ForSnooze("c", "U3", now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	before := s.List(true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, silenceFor("agent_id=x", now, time.Hour)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close = %v; want ErrClosed", err)
	}

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	s2 := open(t, path, clk, Options{})
	after := s2.List(true)
	if len(after) != 3 {
		t.Fatalf("after reopen List(true) has %d silences; want 3", len(after))
	}
	for i := range before {
		if !equalSilence(before[i], after[i]) {
			t.Errorf("silence %d changed across reopen:\n%+v\n%+v", i, before[i], after[i])
		}
	}
	if got := ids(s2.Match(map[string]string{"agent_id": "a", "feature": "response_bytes"}, now)); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("Match after reopen = %v; want %v", got, []string{a.ID})
	}
	if got, _ := s2.Get(b.ID); got.ExpiredBy != "U2" {
		t.Fatalf("expiry lost across reopen: %+v", got)
	}
	again, created, err := s2.AddWithKey(ctx, "slack:T1:trig:1", ForSnooze("c", "U3", now, time.Hour))
	if err != nil || created || again.ID != k.ID {
		t.Fatalf("AddWithKey after reopen = %s, %v, %v; want the existing %s", again.ID, created, err, k.ID)
	}
}

func equalSilence(a, b Silence) bool {
	return a.ID == b.ID && slices.Equal(a.Matchers, b.Matchers) && a.StartsAt.Equal(b.StartsAt) && a.EndsAt.Equal(b.EndsAt) &&
		a.CreatedBy == b.CreatedBy && a.Comment == b.Comment && a.Reason == b.Reason && a.AnomalyID == b.AnomalyID &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiredAt.Equal(b.ExpiredAt) && a.ExpiredBy == b.ExpiredBy
}

func TestTornLastLine(t *testing.T) {
	clk := newClock()
	path := tempPath(t)
	s := open(t, path, clk, Options{})
	a := mustAdd(t, s, silenceFor("agent_id=a", clk.Now(), time.Hour))
	s.Close()
	good, _ := os.ReadFile(path)

	// A crash in the middle of the next write leaves half a line.
	b, _ := appendLine(nil, Silence{ID: "torn"})
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(b[:len(b)/2])
	f.Close()

	clk.Add(time.Second) // List orders by CreatedAt
	s2 := open(t, path, clk, Options{})
	if got := ids(s2.List(true)); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("after a torn line List = %v; want %v", got, []string{a.ID})
	}
	if now, _ := os.ReadFile(path); string(now) != string(good) {
		t.Fatalf("torn line not cut off: file is %q", now)
	}
	c := mustAdd(t, s2, silenceFor("agent_id=c", clk.Now(), time.Hour))
	s2.Close()
	s3 := open(t, path, clk, Options{})
	if got := ids(s3.List(true)); !slices.Equal(got, []string{a.ID, c.ID}) {
		t.Fatalf("after writing past the cut List = %v; want %v", got, []string{a.ID, c.ID})
	}
}

func TestDamagedLine(t *testing.T) {
	path := tempPath(t)
	clk := newClock()
	s := open(t, path, clk, Options{})
	mustAdd(t, s, silenceFor("agent_id=a", clk.Now(), time.Hour))
	s.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"silence":{"id":"x","matchers":[{"name":"host","value":"a","type":"equal"}]}}` + "\n")
	f.Close()
	_, err := Open(path, Options{Now: clk.Now})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "move the file aside") {
		t.Fatalf("Open of a damaged file = %v; want an error naming line 2 and the fix", err)
	}
	// The failed Open released the lock.
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	f.Close()
	open(t, path, clk, Options{})
}

func TestInUse(t *testing.T) {
	path := tempPath(t)
	open(t, path, newClock(), Options{})
	if _, err := Open(path, Options{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v; want ErrInUse", err)
	}
}

func TestAddWithKey(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{})
	now := clk.Now()
	first, created, err := s.AddWithKey(ctx, "click-1", ForSnooze("a", "U1", now, time.Hour))
	if err != nil || !created {
		t.Fatalf("AddWithKey = %+v, %v, %v", first, created, err)
	}
	// A retry, even with other content and after the silence ended,
	// returns the first.
	clk.Add(2 * time.Hour)
	again, created, err := s.AddWithKey(ctx, "click-1", ForSnooze("b", "U2", clk.Now(), time.Minute))
	if err != nil || created || !equalSilence(again, first) {
		t.Fatalf("retried AddWithKey = %+v, %v, %v; want %+v, false", again, created, err, first)
	}
	other, created, err := s.AddWithKey(ctx, "click-2", ForSnooze("a", "U1", clk.Now(), time.Hour))
	if err != nil || !created || other.ID == first.ID {
		t.Fatalf("AddWithKey of another key = %+v, %v, %v", other, created, err)
	}
	if _, _, err := s.AddWithKey(ctx, "", ForSnooze("a", "U1", now, time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddWithKey with an empty key = %v; want ErrInvalid", err)
	}
	if _, created, err := s.AddWithKey(ctx, "click-3", ForSnooze("", "U1", clk.Now(), time.Hour)); !errors.Is(err, ErrInvalid) || created {
		t.Fatalf("AddWithKey of an invalid silence = %v, %v; want ErrInvalid", created, err)
	}
	// The refused key is free for a valid silence.
	if _, created, err := s.AddWithKey(ctx, "click-3", ForSnooze("a", "U1", clk.Now(), time.Hour)); err != nil || !created {
		t.Fatalf("AddWithKey after a refusal = %v, %v", created, err)
	}
}

func TestRetention(t *testing.T) {
	clk := newClock()
	path := tempPath(t)
	opts := Options{Retention: 24 * time.Hour}
	s := open(t, path, clk, opts)
	now := clk.Now()
	short := mustAdd(t, s, silenceFor("agent_id=short", now, time.Hour))
	long := mustAdd(t, s, silenceFor("agent_id=long", now, 72*time.Hour))
	early := mustAdd(t, s, silenceFor("agent_id=early", now, 72*time.Hour))
	key, _, _ := s.AddWithKey(ctx, "k", ForSnooze("keyed", "U1", now, time.Hour))
	if _, err := s.Expire(ctx, early.ID, "U1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	clk.Add(25*time.Hour + time.Minute) // short, keyed and early ended 24h01m ago
	s2 := open(t, path, clk, opts)
	if got := ids(s2.List(true)); !slices.Equal(got, []string{long.ID}) {
		t.Fatalf("after retention List(true) = %v; want only %s (dropped %s, %s, %s)", got, long.ID, short.ID, early.ID, key.ID)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Fatalf("file has %d lines after compaction; want 1", n)
	}
	// A dropped key is forgotten: the same key makes a new silence.
	if _, created, err := s2.AddWithKey(ctx, "k", ForSnooze("keyed", "U1", clk.Now(), time.Hour)); err != nil || !created {
		t.Fatalf("AddWithKey of a dropped key = %v, %v; want a new silence", created, err)
	}

	// Run drops what passes its retention while the store is open.
	clk.Add(72 * time.Hour)
	if err := s2.maintain(); err != nil {
		t.Fatal(err)
	}
	if got := s2.List(true); len(got) != 0 {
		t.Fatalf("after maintenance List(true) = %v; want none", ids(got))
	}
}

func TestCompactSupersededLines(t *testing.T) {
	clk := newClock()
	path := tempPath(t)
	s := open(t, path, clk, Options{CompactMinLines: 8})
	for i := range 4 {
		sil := mustAdd(t, s, silenceFor(fmt.Sprintf("agent_id=a%d", i), clk.Now(), time.Hour))
		if _, err := s.Expire(ctx, sil.ID, "U1", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	// 8 lines for 4 silences: compacted to 4.
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Fatalf("file has %d lines; want 4 after compaction", n)
	}
	s.Close()
	s2 := open(t, path, clk, Options{})
	for _, sil := range s2.List(true) {
		if sil.ExpiredBy != "U1" {
			t.Fatalf("compaction lost an expiry: %+v", sil)
		}
	}
	if n := len(s2.List(true)); n != 4 {
		t.Fatalf("List(true) = %d after compaction; want 4", n)
	}
}

func TestMutesAndMetrics(t *testing.T) {
	clk := newClock()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := open(t, tempPath(t), clk, Options{Metrics: m})
	now := clk.Now()
	a := anomaly.Anomaly{ID: "an1", AgentID: "cs-agent-1", Kind: anomaly.Behaviour, Severity: "high",
		Explanation: []anomaly.Feature{{Name: "response_bytes"}, {Name: "calls"}}}
	if got := s.Mutes(a, now); len(got) != 0 {
		t.Fatalf("Mutes with no silences = %v", ids(got))
	}
	fp, _, err := s.AddWithKey(ctx, "fp-1", ForFalsePositive(a, "U1", now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, silenceFor("agent_id=other", now, time.Hour))
	if v := testutil.ToFloat64(m.Active); v != 2 {
		t.Fatalf("active gauge = %v; want 2", v)
	}
	if got := s.Mutes(a, now); !slices.Equal(ids(got), []string{fp.ID}) {
		t.Fatalf("Mutes = %v; want %s", ids(got), fp.ID)
	}
	b := a
	b.Explanation = []anomaly.Feature{{Name: "client_4xx"}}
	if got := s.Mutes(b, now); len(got) != 0 {
		t.Fatalf("a false positive on response_bytes muted a client_4xx anomaly: %v", ids(got))
	}
	if v := testutil.ToFloat64(m.Suppressed.WithLabelValues("false_positive")); v != 1 {
		t.Fatalf("suppressed{false_positive} = %v; want 1", v)
	}
	if v := testutil.ToFloat64(m.Suppressed.WithLabelValues("manual")); v != 0 {
		t.Fatalf("suppressed{manual} = %v; want 0", v)
	}
	s.Match(nil, now.Add(2*time.Hour))
	if v := testutil.ToFloat64(m.Active); v != 0 {
		t.Fatalf("active gauge after both ended = %v; want 0", v)
	}
}

func TestConcurrent(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{CompactMinLines: 16, Metrics: NewMetrics(prometheus.NewRegistry())})
	var wg sync.WaitGroup
	const workers, each = 8, 20
	created := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				now := clk.Now()
				// Every worker retries the same keys: one silence per key.
				sil, _, err := s.AddWithKey(ctx, fmt.Sprintf("key-%d", i), ForSnooze(fmt.Sprintf("agent-%d", i), "U1", now, time.Hour))
				if err != nil {
					t.Error(err)
					return
				}
				created[w] = append(created[w], sil.ID)
				if i%3 == 0 {
					if _, err := s.Expire(ctx, sil.ID, "U2", time.Time{}); err != nil {
						t.Error(err)
					}
				}
				s.Match(map[string]string{"agent_id": fmt.Sprintf("agent-%d", i)}, now)
				s.Mutes(anomaly.Anomaly{AgentID: "agent-1"}, now)
				s.List(true)
				if i%7 == 0 {
					if err := s.Compact(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for w := 1; w < workers; w++ {
		if !slices.Equal(created[w], created[0]) {
			t.Fatalf("worker %d got ids %v; worker 0 got %v", w, created[w], created[0])
		}
	}
	if n := len(s.List(true)); n != each {
		t.Fatalf("List(true) = %d silences; want %d", n, each)
	}
	for _, sil := range s.List(true) {
		var i int
		fmt.Sscanf(sil.Matchers[0].Value, "agent-%d", &i)
		if (i%3 == 0) != (sil.ExpiredBy == "U2") {
			t.Errorf("silence of agent-%d: expired by %q", i, sil.ExpiredBy)
		}
	}
}

func TestRunStops(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{MaintenanceInterval: time.Millisecond})
	c, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(c) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v; want nil", err)
	}
	s.Close()
	if err := s.Run(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run on a closed store = %v; want ErrClosed", err)
	}
}

func TestReturnedSilencesAreCopies(t *testing.T) {
	clk := newClock()
	s := open(t, tempPath(t), clk, Options{})
	sil := mustAdd(t, s, silenceFor("agent_id=a", clk.Now(), time.Hour))
	sil.Matchers[0].Value = "b"
	s.List(true)[0].Matchers[0].Value = "c"
	if got := s.Match(map[string]string{"agent_id": "a"}, clk.Now()); len(got) != 1 || got[0].Matchers[0].Value != "a" {
		t.Fatalf("a caller's change reached the store: %+v", got)
	}
}
