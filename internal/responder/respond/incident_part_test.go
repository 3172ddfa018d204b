package respond

import (
	"context"
	"encoding/json"
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
