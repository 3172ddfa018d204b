package outbox

import (
	"context"
	"fmt"
	"time"
)

// openScanner is a Store that lets the Worker walk its open entries in Seq
// order without listing them: FileStore and PartStore keep them in order
// as they change (openIndex), where List would sort and copy the whole
// backlog at every pass. The Worker falls back to List for other stores.
type openScanner interface {
	// scanOpen calls v.counts, then v.visit with each open entry in Seq
	// order, as List(StatePending, StateInFlight) would return them,
	// until visit says stop. It returns a copy of each entry visit took.
	// v runs under the store's lock: it must not call the store.
	scanOpen(ctx context.Context, v openVisitor) ([]Entry, error)
}

// openVisitor decides, while a store walks its open entries, which ones
// the Worker starts.
type openVisitor interface {
	// counts is told how many entries of each kind are open and
	// parked; the maps are the visitor's. False skips the walk.
	counts(open, parked map[string]int) bool
	// visit is shown each open entry in Seq order; o is valid during the
	// call only. take asks for the entry; stop ends the walk.
	visit(o *openRef) (take, stop bool)
}

// startDue starts every entry that may run now and returns when the next
// one falls due (at the latest now+poll). It sets the gauges on every
// pass: the stores count by kind as entries change, so that costs a few
// map reads, not a list.
func (r *runState) startDue(ctx, hctx context.Context, poll time.Duration) (time.Time, error) {
	if r.pass == nil {
		r.pass = &pass{r: r, held: map[string]bool{}, started: map[string]int{}, left: map[string]int{}, settled: map[string]bool{}}
	}
	p := r.pass
	p.now = r.w.now()
	p.next = p.now.Add(poll)
	var taken []Entry
	var err error
	if sc, ok := r.w.Store.(openScanner); ok {
		taken, err = sc.scanOpen(ctx, p)
	} else {
		taken, err = listOpen(ctx, r.w.Store, p)
	}
	if err != nil {
		return p.next, fmt.Errorf("list open outbox entries: %w", err)
	}
	r.lastOpen = 0
	for kind, n := range p.open {
		r.lastOpen += n
		if _, ok := r.w.Kinds[kind]; !ok && !r.warned[kind] {
			r.warned[kind] = true
			r.log.Error("outbox entries of a kind without handler stay pending", "kind", kind, "entries", n)
		}
	}
	for _, e := range taken {
		due := e.NextAttempt
		if pu := r.pausedUntil[e.Kind]; pu.After(due) {
			due = pu
		}
		if err := r.start(ctx, hctx, e, r.w.Kinds[e.Kind], p.now.Sub(due)); err != nil {
			return p.next, err
		}
	}
	r.gauges(p.open, p.parked)
	return p.next, nil
}

// listOpen is scanOpen for a Store that is no openScanner.
func listOpen(ctx context.Context, s Store, v openVisitor) ([]Entry, error) {
	open, err := s.List(ctx, StatePending, StateInFlight)
	if err != nil {
		return nil, err
	}
	parked, err := s.List(ctx, StateParked)
	if err != nil {
		return nil, err
	}
	nOpen, nParked := map[string]int{}, map[string]int{}
	for _, e := range open {
		nOpen[e.Kind]++
	}
	for _, e := range parked {
		nParked[e.Kind]++
	}
	if !v.counts(nOpen, nParked) {
		return nil, nil
	}
	var taken []Entry
	for i := range open {
		o := refOf(&open[i])
		take, stop := v.visit(&o)
		if take {
			taken = append(taken, open[i])
		}
		if stop {
			break
		}
	}
	return taken, nil
}

// pass is one startDue's walk over the open entries in Seq order: it picks
// the entries to start and the time to look again, and stops the walk as
// soon as nothing further can start or bring that time forward, so that
// under a backlog, with every kind busy, a pass looks at a few entries
// instead of all. Its maps are cleared and reused from pass to pass.
//
// The walk stops once every kind with a handler is settled: it has no
// open entry left to visit, or it reached its concurrency limit (its later
// entries would be skipped, and a finishing handler wakes the Worker), or
// its Retry-After pause runs past now and next is already no later than
// the pause's end (its later entries are due at the end at the earliest).
// Entries of kinds without a handler never start and never set next.
type pass struct {
	r         *runState
	now, next time.Time
	// held: order keys whose first open entry was visited.
	held map[string]bool
	// started: entries of each kind taken to start in this pass.
	started map[string]int
	// left: open entries of each kind with a handler not visited yet.
	left      map[string]int
	settled   map[string]bool
	unsettled int
	// open and parked: the entries of each kind, for the gauges.
	open, parked map[string]int
}

var _ openVisitor = (*pass)(nil)

func (p *pass) counts(open, parked map[string]int) bool {
	p.open, p.parked = open, parked
	clear(p.held)
	clear(p.started)
	clear(p.left)
	clear(p.settled)
	p.unsettled = 0
	for kind, k := range p.r.w.Kinds {
		p.left[kind] = open[kind]
		if open[kind] == 0 || p.r.perKind[kind] >= k.concurrency() {
			p.settled[kind] = true
			continue
		}
		p.unsettled++
	}
	return p.unsettled > 0
}

func (p *pass) visit(o *openRef) (take, stop bool) {
	take = p.decide(o)
	if n, ok := p.left[o.Kind]; ok {
		if p.left[o.Kind] = n - 1; n == 1 {
			p.settle(o.Kind)
		}
	}
	return take, p.unsettled == 0
}

// decide reports whether o is to start now, and records what o tells
// about the rest: its order key is held, its kind may be settled, next
// may come forward.
func (p *pass) decide(o *openRef) bool {
	if o.OrderKey != "" {
		if p.held[o.OrderKey] {
			return false
		}
		p.held[o.OrderKey] = true
	}
	if p.r.running[o.Key] {
		return false
	}
	k, ok := p.r.w.Kinds[o.Kind]
	if !ok {
		return false // startDue warns once per kind
	}
	limit := k.concurrency()
	if p.r.perKind[o.Kind]+p.started[o.Kind] >= limit {
		return false // a finishing handler wakes the loop
	}
	due := o.NextAttempt
	pause := p.r.pausedUntil[o.Kind]
	if pause.After(due) {
		due = pause
	}
	if due.After(p.now) {
		if due.Before(p.next) {
			p.next = due
		}
		if pause.After(p.now) && !p.next.After(pause) {
			p.settle(o.Kind)
		}
		return false
	}
	if o.State == StateInFlight && o.Failures >= p.r.bo.MaxAttempts {
		return true // start parks it, which takes no slot
	}
	if p.started[o.Kind]++; p.r.perKind[o.Kind]+p.started[o.Kind] >= limit {
		p.settle(o.Kind)
	}
	return true
}

func (p *pass) settle(kind string) {
	if !p.settled[kind] {
		p.settled[kind] = true
		p.unsettled--
	}
}

// gauges sets the pending and parked gauges of every kind seen.
func (r *runState) gauges(open, parked map[string]int) {
	if r.w.Metrics == nil {
		return
	}
	for k := range open {
		r.gaugeKinds[k] = true
	}
	for k := range parked {
		r.gaugeKinds[k] = true
	}
	for k := range r.gaugeKinds {
		r.w.Metrics.Pending.WithLabelValues(k).Set(float64(open[k]))
		r.w.Metrics.Parked.WithLabelValues(k).Set(float64(parked[k]))
	}
}
