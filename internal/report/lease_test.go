package report

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

// memLease is a lease table on an injected clock: the first live claim
// holds, as chstore's leases table does.
type memLease struct {
	mu     sync.Mutex
	now    func() time.Time
	owner  map[string]string
	until  map[string]time.Time
	claims int
	// renew, when set, answers the claims after the first (a holder's
	// renewals).
	renew func() (bool, error)
}

func newMemLease(now func() time.Time) *memLease {
	return &memLease{now: now, owner: map[string]string{}, until: map[string]time.Time{}}
}

func (l *memLease) TakeLease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.claims++
	if l.renew != nil && l.claims > 1 {
		return l.renew()
	}
	now := l.now()
	if o := l.owner[name]; o != "" && o != owner && now.Before(l.until[name]) {
		return false, nil
	}
	l.owner[name], l.until[name] = owner, now.Add(ttl)
	return true, nil
}

// leaseRig is two instances' schedulers on one chain, one lease table and
// one Slack, at 2026-12-01 07:00 (November is due).
type leaseRig struct {
	srv   *testsrv.Slack
	chain *evidence.FileChain
	root  string
	lease *memLease
	mu    sync.Mutex
	now   time.Time
}

func newLeaseRig(t *testing.T) *leaseRig {
	t.Helper()
	g := &leaseRig{srv: testsrv.NewSlack(), now: time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)}
	t.Cleanup(g.srv.Close)
	dir := t.TempDir()
	chain, err := evidence.OpenFileChain(filepath.Join(dir, "chain.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Close() })
	g.chain, g.root = chain, filepath.Join(dir, "evidence")
	t.Cleanup(func() { makeWritable(g.root) })
	g.lease = newMemLease(g.clock)
	return g
}

func (g *leaseRig) clock() time.Time { g.mu.Lock(); defer g.mu.Unlock(); return g.now }

func (g *leaseRig) advance(d time.Duration) { g.mu.Lock(); g.now = g.now.Add(d); g.mu.Unlock() }

func (g *leaseRig) scheduler(owner string) *Scheduler {
	b, _ := fixtureBuilder()
	return &Scheduler{
		Job: &Job{Builder: b, Formats: []string{"html"}, Chain: g.chain, EvidenceRoot: g.root,
			Slack: slack.New("xoxb-test", slack.OptionAPIURL(g.srv.URL())), Channel: "C0REPORTS"},
		Schedule: Schedule{At: 6 * time.Hour}, Chain: g.chain, Now: g.clock,
		Lease: g.lease, Owner: owner, LeaseTTL: 15 * time.Minute,
	}
}

func (g *leaseRig) posted() int {
	n := 0
	for _, f := range g.srv.Files() {
		if f.Completed {
			n++
		}
	}
	return n
}

// TestSchedulerLeaseOneRunner: two instances tick at once; the lease lets
// one write, post and record November, the other waits; once the lease
// has expired the other finds the period done in the shared chain.
func TestSchedulerLeaseOneRunner(t *testing.T) {
	g := newLeaseRig(t)
	a, b := g.scheduler("a"), g.scheduler("b")
	type out struct {
		o   outcome
		err error
	}
	outs := make([]out, 2)
	var wg sync.WaitGroup
	for i, s := range []*Scheduler{a, b} {
		wg.Go(func() {
			o, err := s.tickCounted(t.Context())
			outs[i] = out{o, err}
		})
	}
	wg.Wait()
	ran, elsewhere := 0, 0
	for i, o := range outs {
		switch {
		case o.err != nil:
			t.Fatalf("instance %d: %v", i, o.err)
		case o.o == outcomeRan:
			ran++
		case o.o == outcomeElsewhere:
			elsewhere++
		}
	}
	if ran != 1 || elsewhere != 1 {
		t.Fatalf("outcomes %+v: want one ran, one elsewhere", outs)
	}
	g.advance(16 * time.Minute) // the holder's lease expires
	for _, s := range []*Scheduler{a, b} {
		if o, err := s.tickCounted(t.Context()); err != nil || o != outcomeDone {
			t.Fatalf("after the run: outcome %v, %v; want done", o, err)
		}
	}
	if n := g.posted(); n != 1 {
		t.Errorf("%d reports posted, want 1", n)
	}
	recs, err := evidence.FindReports(t.Context(), g.chain, "2026-11")
	if err != nil || len(recs) != 1 {
		t.Fatalf("chain: %d report records, %v", len(recs), err)
	}
	if err := evidence.VerifyChain(t.Context(), g.chain, g.root); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerLeaseTakeover: an instance that took the lease and died
// holds the period until its lease expires; then the next tick of
// another writes it.
func TestSchedulerLeaseTakeover(t *testing.T) {
	g := newLeaseRig(t)
	if held, err := g.lease.TakeLease(t.Context(), LeaseName("2026-11"), "dead", 15*time.Minute); !held || err != nil {
		t.Fatal(held, err)
	}
	b := g.scheduler("b")
	if o, err := b.tickCounted(t.Context()); err != nil || o != outcomeElsewhere {
		t.Fatalf("while the dead instance holds it: %v, %v", o, err)
	}
	g.advance(10 * time.Minute)
	if o, err := b.tickCounted(t.Context()); err != nil || o != outcomeElsewhere {
		t.Fatalf("10 minutes on: %v, %v", o, err)
	}
	g.advance(6 * time.Minute)
	if o, err := b.tickCounted(t.Context()); err != nil || o != outcomeRan {
		t.Fatalf("after the lease expired: %v, %v", o, err)
	}
	if n := g.posted(); n != 1 {
		t.Errorf("%d posted", n)
	}
}

// TestSchedulerLeaseRunWaits: Run tries a period another instance holds
// again after Retry, not at the next period.
func TestSchedulerLeaseRunWaits(t *testing.T) {
	g := newLeaseRig(t)
	if held, _ := g.lease.TakeLease(t.Context(), LeaseName("2026-11"), "other", 15*time.Minute); !held {
		t.Fatal("not held")
	}
	s := g.scheduler("b")
	s.Retry = 7 * time.Minute
	waits := make(chan time.Duration, 1)
	s.After = func(d time.Duration) <-chan time.Time { waits <- d; return make(chan time.Time) }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case d := <-waits:
		if d != 7*time.Minute {
			t.Errorf("waits %s, want the retry (7m)", d)
		}
	case <-time.After(time.Minute):
		t.Fatal("no wait")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := g.posted(); n != 0 {
		t.Errorf("%d posted while another instance held the lease", n)
	}
}

// TestSchedulerLeaseLost: a renewal that finds the lease held by another
// instance, and renewals that keep failing until the lease could expire,
// each stop the run: nothing is posted or recorded beside the instance
// that may run the period now.
func TestSchedulerLeaseLost(t *testing.T) {
	for name, c := range map[string]struct {
		renew func() (bool, error)
		want  error
	}{
		"taken by another": {func() (bool, error) { return false, nil }, errLeaseLost},
		"renewals failing": {func() (bool, error) { return false, errors.New("clickhouse unreachable") }, errLeaseUnsure},
	} {
		t.Run(name, func(t *testing.T) {
			g := newLeaseRig(t)
			g.lease.renew = c.renew
			s := g.scheduler("a")
			s.LeaseTTL = 150 * time.Millisecond // renewals every 50 ms of the wall clock
			job := s.Job
			s.Job = nil
			s.Prepare = func(ctx context.Context, p Period) (*Job, func(), error) {
				<-ctx.Done() // a slow build, overtaken by the renewal
				return job, func() {}, nil
			}
			var got error
			s.OnRun = func(_ Period, _ Result, err error) { got = err }
			o, err := s.tickCounted(t.Context())
			if err == nil || o == outcomeRan {
				t.Fatalf("outcome %v, %v: want a failed run", o, err)
			}
			if !errors.Is(got, c.want) {
				t.Errorf("run error %v: want %v", got, c.want)
			}
			if n := g.posted(); n != 0 {
				t.Errorf("%d posted after the lease was lost", n)
			}
			if recs, _ := evidence.FindReports(t.Context(), g.chain, "2026-11"); len(recs) != 0 {
				t.Errorf("%d records after the lease was lost", len(recs))
			}
		})
	}
}
