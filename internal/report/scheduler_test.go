package report

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

func TestScheduleDueAndNext(t *testing.T) {
	at := func(s string) time.Time { return must(time.Parse(time.RFC3339, s)) }
	monthly := Schedule{At: 6 * time.Hour}
	weekly := Schedule{Weekly: true, At: 6*time.Hour + 30*time.Minute}
	for _, c := range []struct {
		s         Schedule
		now       string
		due, next string
	}{
		{monthly, "2026-12-01T05:59:59Z", "2026-10", "2026-12-01T06:00:00Z"},
		{monthly, "2026-12-01T06:00:00Z", "2026-11", "2027-01-01T06:00:00Z"},
		{monthly, "2026-12-17T12:00:00Z", "2026-11", "2027-01-01T06:00:00Z"},
		{weekly, "2026-11-23T06:29:00Z", "2026-W46", "2026-11-23T06:30:00Z"}, // Monday of W48
		{weekly, "2026-11-23T06:30:00Z", "2026-W47", "2026-11-30T06:30:00Z"},
		{weekly, "2027-01-04T07:00:00Z", "2026-W53", "2027-01-11T06:30:00Z"},
	} {
		if got := c.s.Due(at(c.now)).Name; got != c.due {
			t.Errorf("%+v at %s: due %s, want %s", c.s, c.now, got, c.due)
		}
		if got := c.s.Next(at(c.now)); !got.Equal(at(c.next)) {
			t.Errorf("%+v at %s: next %s, want %s", c.s, c.now, got, c.next)
		}
	}
}

// fakeClock is a clock the test moves: After hands the test each wait.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// advance waits for the scheduler to sleep, checks how long it asked
// for, moves the clock by that and wakes it.
func (c *fakeClock) advance(t *testing.T, want time.Duration) {
	t.Helper()
	select {
	case w := <-c.waits:
		if w.d != want {
			t.Fatalf("scheduler sleeps %s, want %s", w.d, want)
		}
		c.mu.Lock()
		c.now = c.now.Add(w.d)
		now := c.now
		c.mu.Unlock()
		w.fire <- now
	case <-time.After(time.Minute):
		t.Fatal("the scheduler did not go to sleep")
	}
}

func TestSchedulerRunsEachPeriodOnce(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	dir := t.TempDir()
	chain, err := evidence.OpenFileChain(filepath.Join(dir, "chain.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	root := filepath.Join(dir, "evidence")
	defer makeWritable(root)

	clock := &fakeClock{now: time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC), waits: make(chan fakeWait)}
	start := func() (*Scheduler, chan Period, context.CancelFunc, chan error) {
		b, _ := fixtureBuilder()
		b.Now = clock.Now
		runs := make(chan Period, 10)
		s := &Scheduler{
			Job: &Job{Builder: b, Formats: []string{"html"}, OutDir: filepath.Join(dir, "out"), Chain: chain, EvidenceRoot: root,
				Slack: slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())), Channel: "C0REPORTS"},
			Schedule: Schedule{At: 6 * time.Hour}, Chain: chain, Retry: 7 * time.Minute,
			Now: clock.Now, After: clock.After,
			OnRun: func(p Period, _ Result, err error) {
				if err == nil {
					runs <- p
				} else {
					runs <- Period{Name: "failed " + p.Name}
				}
			},
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, runs, cancel, done
	}
	expect := func(runs chan Period, want string) {
		t.Helper()
		select {
		case p := <-runs:
			if p.Name != want {
				t.Fatalf("ran %s, want %s", p.Name, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("no run of %s", want)
		}
	}

	// At 05:00 on the 1st: October is caught up at once, November waits
	// for 06:00; posting November fails once and is tried again.
	_, runs, cancel, done := start()
	expect(runs, "2026-10")
	srv.FailNext("files.completeUploadExternal", "not_in_channel")
	clock.advance(t, time.Hour)
	expect(runs, "failed 2026-11")
	clock.advance(t, 7*time.Minute)
	expect(runs, "2026-11")
	// Next: January 1st 06:00.
	select {
	case w := <-clock.waits:
		if want := time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC).Sub(clock.Now()); w.d != want {
			t.Fatalf("sleeps %s, want %s", w.d, want)
		}
	case <-time.After(time.Minute):
		t.Fatal("no sleep")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A restart the same day writes nothing again.
	_, runs, cancel, done = start()
	clock.mu.Lock()
	clock.now = clock.now.Add(2 * time.Hour)
	clock.mu.Unlock()
	select {
	case <-clock.waits:
	case p := <-runs:
		t.Fatalf("ran %s again after a restart", p.Name)
	case <-time.After(time.Minute):
		t.Fatal("no sleep")
	}
	cancel()
	<-done

	for _, p := range []string{"2026-10", "2026-11"} {
		recs, err := evidence.FindReports(context.Background(), chain, p)
		if err != nil || len(recs) != 1 {
			t.Errorf("%s: %d records, %v", p, len(recs), err)
		}
	}
	// One edition posted per period, plus the upload whose sharing failed.
	completed := 0
	for _, f := range srv.Files() {
		if f.Completed {
			completed++
		}
	}
	if completed != 2 {
		t.Errorf("%d files shared, want 2", completed)
	}
	if err := evidence.VerifyChain(context.Background(), chain, root); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
}
