package partstate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recPart records what the Owner does to it.
type recPart struct {
	mu     sync.Mutex
	prefix string
	loaded map[int32][]string
	active []int32
	events []string
	fail   error
}

func (r *recPart) Prefix() string { return r.prefix }
func (r *recPart) Load(p int32, key string, value []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if r.loaded == nil {
		r.loaded = map[int32][]string{}
	}
	if value == nil {
		key = "-" + key
	}
	r.loaded[p] = append(r.loaded[p], key)
	return nil
}
func (r *recPart) Activate(p int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = append(r.active, p)
	r.events = append(r.events, fmt.Sprintf("activate %d", p))
}
func (r *recPart) Revoke(_ context.Context, p int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("revoke %d", p))
	return nil
}

func TestOwnerAssignRoutesRecordsByPrefix(t *testing.T) {
	cl := NewMemChangelog(3)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cl.Append(ctx, 0, Record{Key: "o/a", Value: []byte("1")}, Record{Key: "i/x", Value: []byte("2")}, Record{Key: "o/a"}))
	must(cl.Append(ctx, 1, Record{Key: "o/b", Value: []byte("3")}, Record{Key: "z/unknown", Value: []byte("4")}))
	o, i := &recPart{prefix: "o/"}, &recPart{prefix: "i/"}
	own := NewOwner(cl, nil, o)
	own.Add(i)
	own.Metrics = NewMetrics(prometheus.NewRegistry())
	if own.Owns("anyone") || len(own.Owned()) != 0 {
		t.Fatal("owns something before any assignment")
	}
	must(own.Assign(ctx, []int32{0, 1}))
	if got, want := o.loaded[0], []string{"a", "-a"}; !slices.Equal(got, want) {
		t.Errorf("outbox part got %v from partition 0, want %v", got, want)
	}
	if got := i.loaded[0]; !slices.Equal(got, []string{"x"}) {
		t.Errorf("incident part got %v from partition 0", got)
	}
	if got := o.loaded[1]; !slices.Equal(got, []string{"b"}) {
		t.Errorf("outbox part got %v from partition 1", got)
	}
	if !slices.Equal(own.Owned(), []int32{0, 1}) || !own.OwnsPartition(1) || own.OwnsPartition(2) {
		t.Errorf("owned %v, want [0 1]", own.Owned())
	}
	if p, ok := own.Any(); !ok || p != 0 {
		t.Errorf("Any = %d, %v", p, ok)
	}
	for _, agent := range []string{"agent-1", "agent-2", "agent-3", "agent-4"} {
		if own.Owns(agent) != own.OwnsPartition(own.Partition(agent)) {
			t.Errorf("Owns(%s) disagrees with its partition %d", agent, own.Partition(agent))
		}
	}
	if got := testutil.ToFloat64(own.Metrics.Owned); got != 2 {
		t.Errorf("partitions_owned = %v after assigning 2", got)
	}
	must(own.Revoke(ctx, []int32{1}))
	if got := testutil.ToFloat64(own.Metrics.Owned); got != 1 {
		t.Errorf("partitions_owned = %v after revoking 1 of 2", got)
	}
	if own.OwnsPartition(1) || !own.OwnsPartition(0) {
		t.Errorf("owned %v after revoking 1, want [0]", own.Owned())
	}
	slices.Sort(o.events[:2]) // partitions restore concurrently
	if !slices.Equal(o.events, []string{"activate 0", "activate 1", "revoke 1"}) {
		t.Errorf("outbox part saw %v", o.events)
	}
}

func TestOwnerAssignFailureKeepsThePartitionOut(t *testing.T) {
	cl := NewMemChangelog(2)
	ctx := context.Background()
	if err := cl.Append(ctx, 1, Record{Key: "o/a", Value: []byte("{")}); err != nil {
		t.Fatal(err)
	}
	bad := &recPart{prefix: "o/", fail: errors.New("cannot decode")}
	own := NewOwner(cl, nil, bad)
	if err := own.Assign(ctx, []int32{0, 1}); err == nil {
		t.Fatal("Assign with an undecodable record: nil error")
	}
	if !own.OwnsPartition(0) || own.OwnsPartition(1) {
		t.Errorf("owned %v, want [0]: a partition that did not restore must not go live", own.Owned())
	}
	if slices.Contains(bad.active, 1) || !slices.Contains(bad.events, "revoke 1") {
		t.Errorf("part saw %v: the partly loaded partition must be dropped, not activated", bad.events)
	}
	if err := own.Assign(ctx, []int32{5}); err == nil {
		t.Error("Assign of a partition the changelog lacks: nil error")
	}
}
