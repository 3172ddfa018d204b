package outbox

import (
	"cmp"
	"slices"
	"time"
)

// openRef is what a store's openIndex keeps of an open entry: what the
// Worker decides by, so that choosing what to run walks one slice instead
// of looking each entry up, copying and sorting it.
type openRef struct {
	Seq         int64
	Key         string
	Kind        string
	OrderKey    string
	Partition   int32
	State       State
	Failures    int
	NextAttempt time.Time
	// dead: the entry is no longer open (or no longer this ref's);
	// dropped in bulk by compact.
	dead bool
}

func refOf(e *Entry) openRef {
	return openRef{Seq: e.Seq, Key: e.Key, Kind: e.Kind, OrderKey: e.OrderKey, Partition: e.Partition,
		State: e.State, Failures: e.Failures, NextAttempt: e.NextAttempt}
}

// compareRefs orders by Seq, then Key: two processes' stores number their
// entries independently, so a store holding partitions restored from
// both may hold equal Seqs.
func compareRefs(a, b *openRef) int {
	return cmp.Or(cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Key, b.Key))
}

// kindState is a counter's key in openIndex.counts.
type kindState struct {
	kind  string
	state State
}

// openIndex keeps a store's open entries (pending, in flight) in Seq
// order as they change, and counts the entries of each partition, kind
// and state, so that the Worker's pass over the backlog costs what it
// looks at, not a sort of everything open. The store calls set and drop
// under its lock for every change of its entries map; not safe for
// concurrent use on its own.
//
// New entries come with growing Seqs and are appended; an entry
// reopened out of order (a Requeue) is inserted in place. An entry that
// closes is only marked dead, and dead refs are dropped in bulk once
// they are the majority, so a finishing entry costs a binary search.
type openIndex struct {
	refs []openRef
	dead int
	// unsorted: addUnsorted appended refs out of order; sort fixes it.
	unsorted bool
	counts   map[int32]map[kindState]int
}

// set records that the entry old (nil if the key had none) is now e.
func (x *openIndex) set(old *Entry, e *Entry) {
	if old != nil {
		x.count(old, -1)
	}
	x.count(e, 1)
	oldOpen := old != nil && old.State.Open()
	switch {
	case oldOpen && e.State.Open() && old.Seq == e.Seq:
		if i := x.find(old); i >= 0 {
			x.refs[i] = refOf(e)
			return
		}
		x.add(e) // not indexed: cannot happen, but stay correct
	case oldOpen:
		x.remove(old)
		if e.State.Open() {
			x.add(e)
		}
	case e.State.Open():
		x.add(e)
	}
}

// drop records that the entry old is gone.
func (x *openIndex) drop(old *Entry) {
	x.count(old, -1)
	if old.State.Open() {
		x.remove(old)
	}
}

func (x *openIndex) count(e *Entry, d int) {
	if x.counts == nil {
		x.counts = map[int32]map[kindState]int{}
	}
	c := x.counts[e.Partition]
	if c == nil {
		c = map[kindState]int{}
		x.counts[e.Partition] = c
	}
	k := kindState{e.Kind, e.State}
	if c[k] += d; c[k] == 0 {
		delete(c, k)
	}
}

// add indexes the open entry e.
func (x *openIndex) add(e *Entry) {
	x.sort()
	r := refOf(e)
	if n := len(x.refs); n == 0 || compareRefs(&x.refs[n-1], &r) < 0 {
		x.refs = append(x.refs, r)
		return
	}
	i, _ := slices.BinarySearchFunc(x.refs, &r, func(a openRef, b *openRef) int { return compareRefs(&a, b) })
	x.refs = slices.Insert(x.refs, i, r)
}

// addUnsorted indexes the open entry e without keeping the order: for
// many entries at once (a restored partition), followed by sort.
func (x *openIndex) addUnsorted(e *Entry) {
	x.count(e, 1)
	if !e.State.Open() {
		return
	}
	r := refOf(e)
	if n := len(x.refs); n > 0 && compareRefs(&x.refs[n-1], &r) > 0 {
		x.unsorted = true
	}
	x.refs = append(x.refs, r)
}

// sort restores the order after addUnsorted.
func (x *openIndex) sort() {
	if !x.unsorted {
		return
	}
	slices.SortFunc(x.refs, func(a, b openRef) int { return compareRefs(&a, &b) })
	x.unsorted = false
}

// find returns the index of the live ref of e, or -1. A reopened entry
// may have a dead ref beside its live one.
func (x *openIndex) find(e *Entry) int {
	x.sort()
	r := openRef{Seq: e.Seq, Key: e.Key}
	i, _ := slices.BinarySearchFunc(x.refs, &r, func(a openRef, b *openRef) int { return compareRefs(&a, b) })
	for ; i < len(x.refs) && x.refs[i].Seq == e.Seq && x.refs[i].Key == e.Key; i++ {
		if !x.refs[i].dead {
			return i
		}
	}
	return -1
}

// remove marks the ref of e dead.
func (x *openIndex) remove(e *Entry) {
	i := x.find(e)
	if i < 0 {
		return
	}
	x.refs[i] = openRef{Seq: e.Seq, Key: e.Key, dead: true}
	x.dead++
	if x.dead >= 64 && 2*x.dead >= len(x.refs) {
		x.refs = slices.DeleteFunc(x.refs, func(r openRef) bool { return r.dead })
		x.dead = 0
	}
}

// scan hands v the counts of the entries whose partition is active (nil:
// every partition), then their open entries in Seq order, and returns a
// copy, from entry, of each entry v took.
func (x *openIndex) scan(v openVisitor, active func(int32) bool, entry func(key string) Entry) []Entry {
	x.sort()
	open, parked := map[string]int{}, map[string]int{}
	for p, c := range x.counts {
		if active != nil && !active(p) {
			continue
		}
		for k, n := range c {
			switch {
			case k.state.Open():
				open[k.kind] += n
			case k.state == StateParked:
				parked[k.kind] += n
			}
		}
	}
	if !v.counts(open, parked) {
		return nil
	}
	var taken []Entry
	for i := range x.refs {
		r := &x.refs[i]
		if r.dead || (active != nil && !active(r.Partition)) {
			continue
		}
		take, stop := v.visit(r)
		if take {
			taken = append(taken, entry(r.Key))
		}
		if stop {
			break
		}
	}
	return taken
}
