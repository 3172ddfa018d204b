package respond

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestPartIncidentsRestoreRevokeAndTombstones(t *testing.T) {
	ctx := context.Background()
	const n = 4
	cl := partstate.NewMemChangelog(n)
	partOf := func(agent string) int32 { return kafka.PartitionFor(agent, n) }
	s := newPartIncidents(cl, partOf)
	own := partstate.NewOwner(cl, nil, s)
	if err := own.Assign(ctx, []int32{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := now.Add(-incidentRetention - time.Hour)
	join := func(id, agent string, at time.Time) Incident {
		t.Helper()
		in, _, err := s.join(anomaly.Anomaly{ID: id, AgentID: agent}, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	fresh := join("a-1", "agent-fresh", now)
	stale := join("a-2", "agent-stale", old)
	revoked := join("a-3", "agent-revoked", old)
	if _, err := s.update(revoked.ID, old, func(in *Incident) { in.Revoked = []string{"kong/c"} }); err != nil {
		t.Fatal(err)
	}
	// Every change is in the agent's partition, under i/<id>.
	var got Incident
	if err := json.Unmarshal(cl.Live(partOf("agent-fresh"))["i/"+fresh.ID], &got); err != nil || got.AgentID != "agent-fresh" {
		t.Fatalf("changelog has %+v (%v) for the fresh incident", got, err)
	}

	dropped, err := s.Compact(ctx)
	if err != nil || dropped != 1 {
		t.Fatalf("Compact = %d, %v; want the stale incident only", dropped, err)
	}
	if _, ok := cl.Live(partOf("agent-stale"))["i/"+stale.ID]; ok {
		t.Error("the stale incident has no tombstone")
	}

	// A new owner of every partition restores the fresh and the revoked
	// incident, not the stale one.
	b := newPartIncidents(cl, partOf)
	bown := partstate.NewOwner(cl, nil, b)
	if err := bown.Assign(ctx, []int32{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{fresh.ID: true, revoked.ID: true, stale.ID: false} {
		if _, ok := b.get(id); ok != want {
			t.Errorf("restored %s: %v, want %v", id, ok, want)
		}
	}
	if in, ok := b.latest("agent-revoked"); !ok || len(in.Revoked) != 1 {
		t.Errorf("restored the revoked agent's incident as %+v, %v", in, ok)
	}
	// Revoking a partition drops its incidents only.
	p := partOf("agent-fresh")
	if err := bown.Revoke(ctx, []int32{p}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.get(fresh.ID); ok {
		t.Error("the revoked partition's incident is still held")
	}
	if _, ok := b.latest("agent-fresh"); ok {
		t.Error("the revoked partition's agent still has a latest incident")
	}
	if partOf("agent-revoked") != p {
		if _, ok := b.get(revoked.ID); !ok {
			t.Error("an incident of another partition was dropped")
		}
	}
}

// gatedChangelog holds every Append until the test lets it go, so that
// changes pile up behind one write.
type gatedChangelog struct {
	*partstate.MemChangelog
	gate    chan struct{}
	mu      sync.Mutex
	appends int
}

func (g *gatedChangelog) Append(ctx context.Context, p int32, recs ...partstate.Record) error {
	g.mu.Lock()
	g.appends++
	g.mu.Unlock()
	<-g.gate
	return g.MemChangelog.Append(ctx, p, recs...)
}

func (g *gatedChangelog) count() int { g.mu.Lock(); defer g.mu.Unlock(); return g.appends }

func TestPartIncidentChangesMadeDuringAWriteShareTheNextOneAndKeepTheirOrder(t *testing.T) {
	ctx := context.Background()
	const n = 2
	mem := partstate.NewMemChangelog(n)
	cl := &gatedChangelog{MemChangelog: mem, gate: make(chan struct{})}
	partOf := func(string) int32 { return 1 }
	s := newPartIncidents(cl, partOf)
	own := partstate.NewOwner(cl, nil, s)
	if err := own.Assign(ctx, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// The first change is written while the others queue behind it.
	joined := make(chan Incident, 1)
	go func() {
		in, _, err := s.join(anomaly.Anomaly{ID: "a-1", AgentID: "agent-1"}, now, time.Hour)
		if err != nil {
			t.Error(err)
		}
		joined <- in
	}()
	for cl.count() < 1 {
		time.Sleep(time.Millisecond)
	}
	// The incident exists in memory once join queued it.
	var id string
	for id == "" {
		if in, ok := s.latest("agent-1"); ok {
			id = in.ID
		}
		time.Sleep(time.Millisecond)
	}
	const changes = 20
	var wg sync.WaitGroup
	returned := make(chan int, changes)
	for i := range changes {
		wg.Go(func() {
			if _, err := s.update(id, now, func(in *Incident) { in.Snapshots = append(in.Snapshots, strconv.Itoa(i)) }); err != nil {
				t.Error(err)
			}
			returned <- i
		})
	}
	wg.Go(func() {
		if _, _, err := s.join(anomaly.Anomaly{ID: "b-1", AgentID: "agent-2"}, now, time.Hour); err != nil {
			t.Error(err)
		}
	})
	// Every change is made in memory (and so queued) while the first
	// write is held; none of them has returned.
	for {
		in, _ := s.get(id)
		_, other := s.latest("agent-2")
		if len(in.Snapshots) == changes && other {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(returned) != 0 {
		t.Fatal("a change returned before it was written")
	}
	close(cl.gate)
	wg.Wait()
	<-joined
	if got := cl.count(); got != 2 {
		t.Errorf("%d writes, want 2: the first change's, then one for the 21 made meanwhile", got)
	}
	recs := mem.Records(1)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3 (the first state, then the last state of each incident)", len(recs))
	}
	var last Incident
	if err := json.Unmarshal(mem.Live(1)["i/"+id], &last); err != nil {
		t.Fatal(err)
	}
	if len(last.Snapshots) != changes {
		t.Errorf("the incident's last record holds %d of the %d changes", len(last.Snapshots), changes)
	}
	// A new owner restores the incident with every change.
	b := newPartIncidents(mem, partOf)
	if err := partstate.NewOwner(mem, nil, b).Assign(ctx, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	if in, ok := b.get(id); !ok || len(in.Snapshots) != changes {
		t.Errorf("restored incident has %d changes (found %v), want %d", len(in.Snapshots), ok, changes)
	}
}

// failingChangelog fails its first fail appends.
type failingChangelog struct {
	*partstate.MemChangelog
	mu   sync.Mutex
	fail int
}

func (f *failingChangelog) Append(ctx context.Context, p int32, recs ...partstate.Record) error {
	f.mu.Lock()
	failing := f.fail > 0
	f.fail--
	f.mu.Unlock()
	if failing {
		return errors.New("broker unreachable")
	}
	return f.MemChangelog.Append(ctx, p, recs...)
}

// A join whose write failed is not taken as done when the same anomaly is
// joined again (the consumer's retry): the incident is written then.
func TestPartIncidentFailedWriteWrittenOnRetry(t *testing.T) {
	ctx := context.Background()
	mem := partstate.NewMemChangelog(1)
	cl := &failingChangelog{MemChangelog: mem, fail: 1}
	s := newPartIncidents(cl, func(string) int32 { return 0 })
	if err := partstate.NewOwner(cl, nil, s).Assign(ctx, []int32{0}); err != nil {
		t.Fatal(err)
	}
	a := anomaly.Anomaly{ID: "a-1", AgentID: "agent-1"}
	if _, _, err := s.join(a, time.Now(), time.Hour); err == nil {
		t.Fatal("join with a failing changelog returned no error")
	}
	if n := len(mem.Records(0)); n != 0 {
		t.Fatalf("%d records after the failed write", n)
	}
	in, created, err := s.join(a, time.Now(), time.Hour)
	if err != nil || created || in.ID == "" {
		t.Fatalf("retried join: %+v created=%v err=%v", in, created, err)
	}
	if recs := mem.Records(0); len(recs) != 1 || recs[0].Key != IncidentPrefix+in.ID {
		t.Fatalf("after the retry the changelog holds %v; want the incident", recs)
	}
	if _, _, err := s.join(a, time.Now(), time.Hour); err != nil || len(mem.Records(0)) != 1 {
		t.Errorf("a third join of a written anomaly wrote again (%d records, err %v)", len(mem.Records(0)), err)
	}
}
