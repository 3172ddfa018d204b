package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// partStoreT returns a PartStore over cl with an Owner that restored ps.
func partStoreT(t testing.TB, cl *partstate.MemChangelog, opts PartOptions, ps ...int32) (*PartStore, *partstate.Owner) {
	t.Helper()
	s := NewPartStore(cl, opts)
	o := partstate.NewOwner(cl, nil, s)
	if err := o.Assign(t.Context(), ps); err != nil {
		t.Fatalf("Assign(%v): %v", ps, err)
	}
	return s, o
}

func keysOf(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPartStoreRestore(t *testing.T) {
	cl := partstate.NewMemChangelog(3)
	a, _ := partStoreT(t, cl, PartOptions{}, 0, 1, 2)
	enqueue(t, a, "p0-done", "k", InPartition(0))
	enqueue(t, a, "p0-pending", "k", InPartition(0), WithOrderKey("ok"))
	enqueue(t, a, "p1-inflight", "k", InPartition(1))
	enqueue(t, a, "p2-pending", "k", InPartition(2))
	done := get(t, a, "p0-done")
	done.State, done.Result = StateDone, []byte("ts-1")
	if _, err := a.Update(t.Context(), done); err != nil {
		t.Fatal(err)
	}
	if _, err := claim(t.Context(), a, get(t, a, "p1-inflight")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		assign []int32
		want   map[string]State
	}{
		{"partition 0 only", []int32{0}, map[string]State{"p0-done": StateDone, "p0-pending": StatePending}},
		{"partition 1 only", []int32{1}, map[string]State{"p1-inflight": StateInFlight}},
		{"all", []int32{0, 1, 2}, map[string]State{"p0-done": StateDone, "p0-pending": StatePending, "p1-inflight": StateInFlight, "p2-pending": StatePending}},
		{"none", nil, map[string]State{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := partStoreT(t, cl, PartOptions{}, tt.assign...)
			listed, err := b.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var all []Entry // without the entries the subtests add
			for _, e := range listed {
				if !strings.HasPrefix(e.Key, "new-") {
					all = append(all, e)
				}
			}
			if len(all) != len(tt.want) {
				t.Fatalf("restored %v, want %v", keysOf(all), tt.want)
			}
			for _, e := range all {
				orig := get(t, a, e.Key)
				if e.State != tt.want[e.Key] || e.Seq != orig.Seq || e.Partition != orig.Partition || e.OrderKey != orig.OrderKey ||
					string(e.Result) != string(orig.Result) || e.Attempts != orig.Attempts || string(e.Payload) != string(orig.Payload) {
					t.Errorf("restored %+v, want %+v", e, orig)
				}
			}
			// A new entry after a restore comes after the restored ones.
			if len(tt.assign) > 0 {
				n := enqueue(t, b, "new-"+tt.name, "k", InPartition(tt.assign[0]))
				for _, e := range all {
					if n.Seq <= e.Seq {
						t.Errorf("new entry seq %d not after restored %s seq %d", n.Seq, e.Key, e.Seq)
					}
				}
			}
		})
	}
}

// TestPartStoreRecoveredAfterHandOver: an entry left in flight by the
// previous owner is run again, Recovered, by the next one.
func TestPartStoreRecoveredAfterHandOver(t *testing.T) {
	cl := partstate.NewMemChangelog(2)
	a, _ := partStoreT(t, cl, PartOptions{}, 1)
	enqueue(t, a, "revoke-1", "k", InPartition(1))
	if _, err := claim(t.Context(), a, get(t, a, "revoke-1")); err != nil {
		t.Fatal(err)
	}
	b, _ := partStoreT(t, cl, PartOptions{}, 1)
	var c calls
	w := &Worker{Store: b, Poll: 10 * time.Millisecond, Kinds: map[string]Kind{"k": {Handler: func(_ context.Context, e Entry) ([]byte, error) {
		c.add(e)
		return nil, nil
	}}}}
	stop := startWorker(t, w)
	waitFor(t, "the recovered run to be recorded", func() bool { return get(t, b, "revoke-1").State == StateDone })
	stop()
	got := c.of("revoke-1")
	if len(got) != 1 || !got[0].recovered || got[0].attempts != 2 {
		t.Errorf("calls %+v, want one recovered call at attempt 2", got)
	}
}

// TestPartStoreRevokeMidRun: revoking a partition waits for the entry the
// Worker runs, starts none of the partition's others (even one enqueued
// during the hand-over), records the outcome and then drops the state.
func TestPartStoreRevokeMidRun(t *testing.T) {
	cl := partstate.NewMemChangelog(2)
	s, o := partStoreT(t, cl, PartOptions{}, 0, 1)
	started := make(chan string, 10)
	release := make(chan struct{})
	var c calls
	w := &Worker{Store: s, Poll: 10 * time.Millisecond, Kinds: map[string]Kind{"k": {Concurrency: 4, Handler: func(ctx context.Context, e Entry) ([]byte, error) {
		c.add(e)
		started <- e.Key
		if e.Key == "slow" {
			<-release
		}
		return []byte("ok"), nil
	}}}}
	enqueue(t, s, "slow", "k", InPartition(0))
	stop := startWorker(t, w)
	defer stop()
	if k := <-started; k != "slow" {
		t.Fatalf("started %q first, want slow", k)
	}
	revoked := make(chan error, 1)
	go func() { revoked <- o.Revoke(t.Context(), []int32{0}) }()
	waitFor(t, "partition 0 to stop being owned", func() bool { return !o.OwnsPartition(0) })
	// A follow-up queued by a handler during the hand-over is kept for
	// the new owner, not run here.
	enqueue(t, s, "follow-up", "k", InPartition(0))
	enqueue(t, s, "other-partition", "k", InPartition(1))
	if k := <-started; k != "other-partition" {
		t.Fatalf("started %q, want other-partition", k)
	}
	select {
	case err := <-revoked:
		t.Fatalf("Revoke returned (%v) while the entry of its partition was running", err)
	default:
	}
	close(release)
	if err := <-revoked; err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, found, _ := s.Get(t.Context(), "slow"); found {
		t.Error("partition 0's entries still held after Revoke")
	}
	if n := len(c.of("follow-up")); n != 0 {
		t.Errorf("follow-up ran %d times on the old owner, want 0", n)
	}
	if _, _, err := s.Enqueue(t.Context(), "late", "k", nil, InPartition(0)); !errors.Is(err, partstate.ErrNotOwned) {
		t.Errorf("Enqueue after Revoke: %v, want ErrNotOwned", err)
	}
	live := cl.Live(0)
	var slow, follow Entry
	if err := json.Unmarshal(live["o/slow"], &slow); err != nil || slow.State != StateDone || string(slow.Result) != "ok" {
		t.Errorf("changelog has slow %+v (%v), want done with its result", slow, err)
	}
	if err := json.Unmarshal(live["o/follow-up"], &follow); err != nil || follow.State != StatePending {
		t.Errorf("changelog has follow-up %+v (%v), want pending", follow, err)
	}
}

// TestPartStoreRevokeTimeout: a hand-over that stops waiting leaves the
// running entry in flight for the next owner, and the Worker goes on.
func TestPartStoreRevokeTimeout(t *testing.T) {
	cl := partstate.NewMemChangelog(1)
	s, o := partStoreT(t, cl, PartOptions{}, 0)
	started := make(chan struct{})
	release := make(chan struct{})
	w := &Worker{Store: s, Poll: 10 * time.Millisecond, Kinds: map[string]Kind{"k": {Handler: func(ctx context.Context, e Entry) ([]byte, error) {
		close(started)
		<-release
		return nil, nil
	}}}}
	enqueue(t, s, "stuck", "k", InPartition(0))
	stop := startWorker(t, w)
	<-started
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := o.Revoke(ctx, []int32{0}); err == nil {
		t.Error("Revoke with an ended context and a running entry: nil error, want one")
	}
	close(release)
	// Let the outcome reach the Worker's loop (not its stop path), where
	// an unrecordable outcome of a dropped entry must not kill it.
	time.Sleep(100 * time.Millisecond)
	stop() // fails the test if the Worker died on the unrecordable outcome
	var e Entry
	if err := json.Unmarshal(cl.Live(0)["o/stuck"], &e); err != nil || e.State != StateInFlight {
		t.Errorf("changelog has %+v (%v), want in flight", e, err)
	}
}

// TestPartStoreUnownedNeverRuns: entries of a partition this process does
// not own are neither listed nor run, and cannot be enqueued here.
func TestPartStoreUnownedNeverRuns(t *testing.T) {
	cl := partstate.NewMemChangelog(2)
	other, _ := partStoreT(t, cl, PartOptions{}, 1)
	enqueue(t, other, "theirs", "k", InPartition(1))
	s, _ := partStoreT(t, cl, PartOptions{}, 0)
	var c calls
	w := &Worker{Store: s, Poll: 5 * time.Millisecond, Kinds: map[string]Kind{"k": {Handler: func(_ context.Context, e Entry) ([]byte, error) {
		c.add(e)
		return nil, nil
	}}}}
	enqueue(t, s, "mine-1", "k", InPartition(0))
	stop := startWorker(t, w)
	waitFor(t, "mine-1", func() bool { return get(t, s, "mine-1").State == StateDone })
	// Several polls later, still only this partition's entries ran.
	enqueue(t, s, "mine-2", "k", InPartition(0))
	waitFor(t, "mine-2", func() bool { return get(t, s, "mine-2").State == StateDone })
	stop()
	if n := len(c.of("theirs")); n != 0 {
		t.Errorf("entry of an unowned partition ran %d times", n)
	}
	if _, _, err := s.Enqueue(t.Context(), "x", "k", nil, InPartition(1)); !errors.Is(err, partstate.ErrNotOwned) {
		t.Errorf("Enqueue in an unowned partition: %v, want ErrNotOwned", err)
	}
	if _, _, err := s.Enqueue(t.Context(), "y", "k", nil); err == nil {
		t.Error("Enqueue without a partition: nil error")
	}
}

func TestPartStoreTombstones(t *testing.T) {
	cl := partstate.NewMemChangelog(1)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, _ := partStoreT(t, cl, PartOptions{DoneRetention: time.Hour, Now: clock}, 0)
	for _, k := range []string{"done", "failed", "parked", "pending", "fresh-done"} {
		enqueue(t, s, k, "k", InPartition(0))
	}
	set := func(key string, st State) {
		e := get(t, s, key)
		e.State = st
		if _, err := s.Update(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	set("done", StateDone)
	set("failed", StateFailed)
	set("parked", StateParked)
	now = now.Add(2 * time.Hour)
	set("fresh-done", StateDone)
	n, err := s.Compact(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v; want 2 dropped", n, err)
	}
	live := cl.Live(0)
	for k, want := range map[string]bool{"done": false, "failed": false, "parked": true, "pending": true, "fresh-done": true} {
		stateKey, payloadKey := PartRecordKeys(k)
		if _, ok := live[stateKey]; ok != want {
			t.Errorf("changelog has %s: %v, want %v", k, ok, want)
		}
		if _, ok := live[payloadKey]; ok != want {
			t.Errorf("changelog has the payload of %s: %v, want %v", k, ok, want)
		}
		if _, found, _ := s.Get(t.Context(), k); found != want {
			t.Errorf("store has %s: %v, want %v", k, found, want)
		}
	}
	recs := cl.Records(0)
	if last := recs[len(recs)-1]; last.Value != nil {
		t.Errorf("last record %q is not a tombstone", last.Key)
	}
	// A new owner restores without them, and their keys can be queued anew.
	b, _ := partStoreT(t, cl, PartOptions{Now: clock}, 0)
	if all, _ := b.List(t.Context()); len(all) != 3 {
		t.Errorf("restored %v, want parked, pending, fresh-done", keysOf(all))
	}
	if _, created, err := b.Enqueue(t.Context(), "done", "k", nil, InPartition(0)); err != nil || !created {
		t.Errorf("Enqueue of a dropped key = %v, %v; want a new entry", created, err)
	}
}

func TestPartStoreWriteFailureStoresNothing(t *testing.T) {
	cl := partstate.NewMemChangelog(1)
	s, _ := partStoreT(t, cl, PartOptions{}, 0)
	enqueue(t, s, "a", "k", InPartition(0))
	cl.Fail = errors.New("broker down")
	if _, _, err := s.Enqueue(t.Context(), "b", "k", nil, InPartition(0)); err == nil {
		t.Fatal("Enqueue with the changelog down: nil error")
	}
	e := get(t, s, "a")
	e.State = StateDone
	if _, err := s.Update(t.Context(), e); err == nil {
		t.Fatal("Update with the changelog down: nil error")
	}
	if _, found, _ := s.Get(t.Context(), "b"); found {
		t.Error("an entry not written is held")
	}
	if get(t, s, "a").State != StatePending {
		t.Error("an update not written was applied")
	}
}

// TestPartStorePayloadOnce: an entry's payload is written once, in its own
// record, and its state records leave it out; a restore joins them, and a
// state record of the older format, payload inside, still restores and
// gets its payload record at the entry's next change.
func TestPartStorePayloadOnce(t *testing.T) {
	cl := partstate.NewMemChangelog(1)
	a, _ := partStoreT(t, cl, PartOptions{}, 0)
	e := enqueue(t, a, "step", "k", InPartition(0))
	c, err := claim(t.Context(), a, e)
	if err != nil {
		t.Fatal(err)
	}
	c.State, c.Result = StateDone, []byte("ts-1")
	if _, err := a.Update(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	stateKey, payloadKey := PartRecordKeys("step")
	var states, payloads int
	for _, r := range cl.Records(0) {
		switch r.Key {
		case stateKey:
			states++
			if strings.Contains(string(r.Value), "cGF5bG9hZCBvZiBzdGVw") || strings.Contains(string(r.Value), "payload of step") {
				t.Errorf("state record holds the payload: %s", r.Value)
			}
		case payloadKey:
			payloads++
			if string(r.Value) != "payload of step" {
				t.Errorf("payload record = %q", r.Value)
			}
		default:
			t.Errorf("unexpected record %q", r.Key)
		}
	}
	if states != 3 || payloads != 1 {
		t.Errorf("wrote %d state and %d payload records, want 3 and 1", states, payloads)
	}
	b, _ := partStoreT(t, cl, PartOptions{}, 0)
	if got := get(t, b, "step"); string(got.Payload) != "payload of step" || got.State != StateDone || string(got.Result) != "ts-1" {
		t.Errorf("restored %+v", got)
	}

	// The older format: one record, payload inside.
	old := Entry{Key: "old", Kind: "k", Seq: 7, Payload: []byte("old payload"), State: StatePending,
		NextAttempt: time.Now().UTC(), Created: time.Now().UTC(), Updated: time.Now().UTC()}
	v, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	oldState, oldPayload := PartRecordKeys("old")
	if err := cl.Append(t.Context(), 0, partstate.Record{Key: oldState, Value: v}); err != nil {
		t.Fatal(err)
	}
	c2, _ := partStoreT(t, cl, PartOptions{}, 0)
	got := get(t, c2, "old")
	if string(got.Payload) != "old payload" {
		t.Fatalf("restored older record with payload %q", got.Payload)
	}
	if _, err := claim(t.Context(), c2, got); err != nil {
		t.Fatal(err)
	}
	if p := cl.Live(0)[oldPayload]; string(p) != "old payload" {
		t.Errorf("payload record after the first change = %q, want the payload", p)
	}
	d, _ := partStoreT(t, cl, PartOptions{}, 0)
	if got := get(t, d, "old"); string(got.Payload) != "old payload" || got.State != StateInFlight {
		t.Errorf("restored after the change: %+v", got)
	}
}

// TestPartStoreKeyNUL: a key cannot start where payload records' keys do.
func TestPartStoreKeyNUL(t *testing.T) {
	s, _ := partStoreT(t, partstate.NewMemChangelog(1), PartOptions{}, 0)
	if _, _, err := s.Enqueue(t.Context(), "\x00x", "k", nil, InPartition(0)); err == nil {
		t.Error("Enqueue of a key starting with NUL succeeded")
	}
}
