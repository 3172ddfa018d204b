package detect

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/event"
)

type countingProgress struct{ calls int }

func (c *countingProgress) Update(uint64, int64) { c.calls++ }

// TestIntegrationBackfillResumesAndStartsWarm backfills two days of events
// stored in ClickHouse, is interrupted after a few chunks, resumes, and
// must end with the same window scores as an uninterrupted backfill and
// with saved baselines a live detector restores warm.
func TestIntegrationBackfillResumesAndStartsWarm(t *testing.T) {
	chAddr := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	rs, s := simRecords(t, twoDays(31))
	cat := simCatalog(t, s)
	evs := make([]event.Event, len(rs))
	for i := range rs {
		rs[i].ev.Topic, rs[i].ev.Partition, rs[i].ev.Offset = "raw", 0, int64(i)
		rs[i].ev.IngestTimeMs = rs[i].ev.EventTimeMs + 500
		evs[i] = rs[i].ev
	}
	from, to := rs[0].ev.EventTimeMs, rs[len(rs)-1].ev.EventTimeMs+1

	open := func(name string) *chstore.Store {
		db := "it_backfill_" + name + "_" + itest.RandHex(3)
		itest.DropDatabaseAfter(t, chAddr, db)
		st, err := chstore.Open(ctx, chstore.Options{Addr: chAddr, Database: db}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.InsertEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		return st
	}
	newBackfill := func(st *chstore.Store) *Backfill {
		return &Backfill{
			Proc: NewProcessor(testSettings(), cat, nil), Store: st, Events: st.EventsBetween,
			PartitionOf: func(ev *event.Event) int32 { return kafka.PartitionFor(ev.AgentID, testPartitions) },
			Partitions:  testPartitions, Group: "g", Topic: "events", Job: "job", FromMs: from, ToMs: to,
			Chunk: 3 * time.Hour,
		}
	}

	whole := open("whole")
	prog := &countingProgress{}
	b := newBackfill(whole)
	b.Progress = prog
	res, err := b.Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != uint64(len(rs)) || prog.calls == 0 {
		t.Fatalf("backfill read %d of %d events, %d progress updates", res.Events, len(rs), prog.calls)
	}
	wantScores, err := whole.Scores(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted after a few chunks, then resumed by a new process.
	split := open("split")
	b1 := newBackfill(split)
	chunks := 0
	b1.Events = func(ctx context.Context, f, to int64, fn func(*event.Event) error) error {
		if chunks++; chunks > 5 {
			return context.Canceled
		}
		return split.EventsBetween(ctx, f, to, fn)
	}
	if _, err := b1.Do(ctx); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("interrupted backfill: %v", err)
	}
	done, ok, err := split.BackfillProgress(ctx, "job")
	if err != nil || !ok || done <= from {
		t.Fatalf("no progress saved before the interruption: %d %v %v", done, ok, err)
	}
	res2, err := newBackfill(split).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res2.ResumedFromMs != done {
		t.Errorf("resumed from %d, progress said %d", res2.ResumedFromMs, done)
	}
	gotScores, err := split.Scores(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	_, wantN := norm(nil, wantScores)
	_, gotN := norm(nil, gotScores)
	if len(gotN) != len(wantN) {
		t.Fatalf("resumed backfill scored %d windows, uninterrupted %d", len(gotN), len(wantN))
	}
	for i := range gotN {
		if gotN[i].WindowStartMs != wantN[i].WindowStartMs || gotN[i].Score != wantN[i].Score {
			t.Fatalf("resumed backfill differs at %d:\n got %+v\nwant %+v", i, gotN[i], wantN[i])
		}
	}

	// A live detector restoring the backfilled state starts warm.
	parts := []int32{0, 1, 2, 3}
	cps, states, err := split.LoadPartitions(ctx, "g", "events", parts)
	if err != nil {
		t.Fatal(err)
	}
	live := NewProcessor(testSettings(), cat, nil)
	byPart := map[int32][]detstate.State{}
	for _, st := range states {
		byPart[st.Partition] = append(byPart[st.Partition], st)
	}
	warm := 0
	for _, p := range parts {
		cp, ok := cps[p]
		if errs := live.Restore(p, cp, ok, byPart[p]); len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, a := range live.parts[p].agents {
			if a.model.Windows() >= testSettings().Baseline.Warmup {
				warm++
			}
		}
	}
	if live.Agents() < 24 || warm < 20 {
		t.Errorf("restored %d agents, %d of them past warm-up: the backfill did not leave warm baselines", live.Agents(), warm)
	}
	t.Logf("backfill: %d events, %d windows; interrupted after 5 chunks and resumed from %s; %d of %d agents restored warm",
		res.Events, len(wantN), time.UnixMilli(done).UTC().Format(time.RFC3339), warm, live.Agents())
}
