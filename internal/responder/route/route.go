// Package route lets any responder instance answer a request that must act
// on an agent another instance owns. Several responders share the
// anomalies topic's partitions, and each holds the state (incidents,
// approval requests, the outbox) of the agents in its partitions only. A
// Slack click or an HTTP API request reaches whichever instance the load
// balancer picks; when that instance does not own the agent, it writes the
// request as a Command to the global table (a compacted, one-partition
// topic every instance reads in full), and the owner runs it once and
// writes its outcome back under the same key, which the receiving
// instance waits for, for a bounded time.
//
// Once: the owner marks a click in the handled set (the same key the
// interaction handler marks) before running it, so a Slack retry that
// reaches another instance, or the owner itself, runs nothing more. A
// partition's new owner runs the partition's commands still pending when
// it is assigned (OnAssigned), after it restored their state.
package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// Table is the global table as the Router needs it (kstate.Table). Put
// returns once the record is durable and applied in this process: the
// Router's Apply has seen it.
type Table interface {
	Put(ctx context.Context, key string, value []byte) (int64, error)
	Delete(ctx context.Context, key string) (int64, error)
}

// Ownership says which agents this instance owns: those of the anomalies
// partitions it holds in the current generation.
type Ownership interface {
	Owns(agentID string) bool
	Partition(agentID string) int32
}

// Executor runs commands on the owner: the responder's engine.
type Executor interface {
	// Locate returns the agent the command acts on when this instance
	// holds the state it needs (the incident a click or a verdict names,
	// the approval request an approve click answers; a run names its
	// agent). ok false: this instance cannot run it.
	Locate(ctx context.Context, c Command) (agentID string, ok bool)
	// Execute runs the command and returns what the receiving instance
	// needs to answer (a run's result), or the error it would have
	// answered with.
	Execute(ctx context.Context, c Command) (json.RawMessage, error)
}

// PartitionLocator is an Executor that also runs commands acting on state
// of no agent (an outbox entry may be a channel's summary): it locates
// them by the anomaly partition that holds their state. The Router asks it
// first; ok false for a command it locates by agent (Locate) or cannot
// locate here.
type PartitionLocator interface {
	LocatePartition(ctx context.Context, c Command) (p int32, ok bool)
}

// PartitionOwnership is an Ownership that says whether it owns an anomaly
// partition (partstate.Owner). Commands located by partition run only
// with an Ownership that implements it.
type PartitionOwnership interface {
	OwnsPartition(p int32) bool
}

// Defaults of Options.
const (
	DefaultTTL       = 15 * time.Minute
	DefaultRetention = time.Hour
	DefaultSweep     = 10 * time.Second
	// maxRunning bounds the commands executing at once (a run may wait a
	// minute for its steps); commands are human-paced.
	maxRunning = 16
	// maxExec bounds one execution without a deadline from its sender.
	maxExec = 5 * time.Minute
	// takeOverRetry is how soon a command of a partition being taken
	// over is looked at again.
	takeOverRetry = 100 * time.Millisecond
)

// ErrPending means the owner had not answered when the wait ended: the
// command stays in the table and runs when its owner gets to it (or
// expires after the TTL).
var ErrPending = errors.New("the instance that owns the agent has not answered yet")

var errUnbound = errors.New("route: Bind was not called")

// Options configure New. Instance is required.
type Options struct {
	// Instance names this process in the commands it writes (its host
	// name and pid, say); it must differ between instances.
	Instance string
	// TTL is how long a command may stay pending before it is dropped;
	// Retention how long a finished one stays in the table (a retry within
	// it gets the first outcome without running anything).
	TTL, Retention time.Duration
	// Sweep is how often expired and old commands are cleaned up.
	Sweep   time.Duration
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
}

// Deps are what a Router routes and runs commands with; Bind gives them.
// They come later than the Router itself: the global table needs the
// Router's Apply when it opens (it applies what it reads), and the
// executor is the engine the table's user builds after.
type Deps struct {
	Table  Table
	Owners Ownership
	Exec   Executor
	// Seen is the shared handled set: the owner marks a click in it
	// before running it.
	Seen outbox.Seen
}

// Router forwards requests to the instance that owns their agent and runs
// those this instance owns. It is safe for concurrent use. Apply must be
// called with every record of the global table under Prefix, in offset
// order (the table's apply), from before Bind on; Bind must be called once,
// before Local, Forward and Run; OnAssigned and OnRevoked by the anomalies
// consumer at each generation; Run runs the execution loop.
type Router struct {
	o Options
	d Deps

	mu      sync.Mutex
	cmds    map[string]*Command
	waiters map[string][]chan Command
	ready   map[int32]bool
	running map[string]int32 // command id → its partition, while it executes
	idle    chan struct{}    // closed and replaced when an execution ends
	wake    chan struct{}
}

// New returns a Router that keeps what Apply gives it. It routes and runs
// nothing before Bind and Run.
func New(o Options) (*Router, error) {
	if o.Instance == "" {
		return nil, errors.New("route: Instance is required: it tells the instances' commands apart")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Sweep <= 0 {
		o.Sweep = DefaultSweep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Router{o: o, cmds: map[string]*Command{}, waiters: map[string][]chan Command{},
		ready: map[int32]bool{}, running: map[string]int32{}, idle: make(chan struct{}), wake: make(chan struct{}, 1)}, nil
}

// Bind gives the Router what it routes and runs commands with. Call it
// once, before Local, Forward and Run.
func (r *Router) Bind(d Deps) error {
	if d.Table == nil || d.Owners == nil || d.Exec == nil || d.Seen == nil {
		return errors.New("route: Table, Owners, Exec and Seen are required")
	}
	r.d = d
	return nil
}

// Apply takes one record of the global table (key with Prefix; nil value:
// deleted). It never blocks on the table: it is called from its apply.
func (r *Router) Apply(key string, value []byte) {
	id, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(value) == 0 {
		delete(r.cmds, id)
		r.o.Metrics.pending(r.countPending())
		return
	}
	var c Command
	if err := json.Unmarshal(value, &c); err != nil {
		r.o.Metrics.count("unknown", "undecodable")
		r.o.Log.Warn("undecodable command in the global table; ignored", "key", key, "err", err)
		return
	}
	if c.ID != id {
		r.o.Metrics.count(c.Kind, "undecodable")
		r.o.Log.Warn("command whose id is not its key; ignored", "key", key, "id", c.ID)
		return
	}
	if err := c.validate(); err != nil && !c.Final() {
		r.o.Metrics.count(c.Kind, "undecodable")
		r.o.Log.Warn("command nobody can run; ignored", "key", key, "err", err)
		return
	}
	if old := r.cmds[id]; old != nil && old.Final() && !c.Final() {
		// A retry written by an instance that had not seen the outcome
		// yet: the outcome stands (and a later restart dedupes it again
		// through the handled set).
		return
	}
	r.cmds[id] = &c
	if c.Final() {
		for _, w := range r.waiters[id] {
			w <- c // buffered, one value each
		}
		delete(r.waiters, id)
	} else {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	r.o.Metrics.pending(r.countPending())
}

func (r *Router) countPending() int {
	n := 0
	for _, c := range r.cmds {
		if !c.Final() {
			n++
		}
	}
	return n
}

// OnAssigned tells the Router that this instance now owns ps and has
// restored their state: their pending commands run now.
func (r *Router) OnAssigned(ps []int32) {
	r.mu.Lock()
	for _, p := range ps {
		r.ready[p] = true
	}
	r.mu.Unlock()
	r.poke()
}

// OnRevoked tells the Router that ps are no longer this instance's: their
// commands are not started here any more.
func (r *Router) OnRevoked(ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		delete(r.ready, p)
	}
}

// Drain waits until no command of partition p is executing here, or ctx
// ends. Call it after OnRevoked, before the partition's state is dropped.
func (r *Router) Drain(ctx context.Context, p int32) error {
	for {
		r.mu.Lock()
		busy := false
		for _, rp := range r.running {
			busy = busy || rp == p
		}
		idle := r.idle
		r.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("commands of partition %d still running: %w", p, ctx.Err())
		}
	}
}

// Local reports whether c can run here, now: this instance holds the state
// it names and owns the agent, in a partition whose state is restored.
func (r *Router) Local(ctx context.Context, c Command) bool {
	_, w := r.where(ctx, c)
	return w == here
}

// Where a command can run, as this instance sees it.
const (
	elsewhere = iota
	here
	// soon: this instance holds the state and is taking the partition
	// over (restored but not yet marked owned, or the reverse).
	soon
)

func (r *Router) where(ctx context.Context, c Command) (int32, int) {
	if r.d.Exec == nil {
		return 0, elsewhere
	}
	var p int32
	var owns bool
	if pl, ok := r.d.Exec.(PartitionLocator); ok && c.Kind == KindOutboxRepair {
		po, pok := r.d.Owners.(PartitionOwnership)
		if p, ok = pl.LocatePartition(ctx, c); !ok || !pok {
			return 0, elsewhere
		}
		owns = po.OwnsPartition(p)
	} else {
		agent, ok := r.d.Exec.Locate(ctx, c)
		if !ok {
			return 0, elsewhere
		}
		p, owns = r.d.Owners.Partition(agent), r.d.Owners.Owns(agent)
	}
	r.mu.Lock()
	ready := r.ready[p]
	r.mu.Unlock()
	switch {
	case owns && ready:
		return p, here
	case owns || ready:
		return p, soon
	}
	return p, elsewhere
}

// Forward writes c to the global table for its owner and waits for the
// outcome until ctx ends, then returns ErrPending with c as written. When
// the table already holds an outcome under c.ID (a retry of a request that
// was answered), Forward returns it with earlier true and writes nothing;
// when it holds c pending, Forward waits for it without writing again.
func (r *Router) Forward(ctx context.Context, c Command) (got Command, earlier bool, err error) {
	if err := c.validate(); err != nil {
		return c, false, fmt.Errorf("forward command: %w", err)
	}
	if r.d.Table == nil {
		return c, false, errUnbound
	}
	now := r.o.Now()
	c.From, c.AtMs, c.State = r.o.Instance, now.UnixMilli(), StatePending
	c.By, c.DoneMs, c.Error, c.ErrorKind, c.Result = "", 0, "", "", nil
	if dl, ok := ctx.Deadline(); ok {
		c.DeadlineMs = dl.UnixMilli()
	}
	ch := make(chan Command, 1)
	r.mu.Lock()
	old := r.cmds[c.ID]
	if old != nil && old.Final() {
		r.mu.Unlock()
		r.o.Metrics.count(c.Kind, "answered_before")
		return *old, true, nil
	}
	r.waiters[c.ID] = append(r.waiters[c.ID], ch)
	r.mu.Unlock()
	if old == nil {
		b, err := json.Marshal(c)
		if err != nil {
			r.dropWaiter(c.ID, ch)
			return c, false, fmt.Errorf("encode command %s: %w", c.ID, err)
		}
		if _, err := r.d.Table.Put(ctx, Prefix+c.ID, b); err != nil {
			r.dropWaiter(c.ID, ch)
			r.o.Metrics.count(c.Kind, "forward_error")
			return c, false, fmt.Errorf("write command %s to the global table: %w", c.ID, err)
		}
		r.o.Metrics.count(c.Kind, "forwarded")
	} else {
		c = *old
	}
	select {
	case got := <-ch:
		return got, false, nil
	case <-ctx.Done():
		r.dropWaiter(c.ID, ch)
		r.o.Metrics.count(c.Kind, "wait_ended")
		return c, false, ErrPending
	}
}

func (r *Router) dropWaiter(id string, ch chan Command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(r.waiters, id)
	} else {
		r.waiters[id] = ws
	}
}

// Get returns the command id as this instance last saw it.
func (r *Router) Get(id string) (Command, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cmds[id]
	if !ok {
		return Command{}, false
	}
	return *c, true
}

// Run executes the pending commands this instance owns, as they arrive and
// when partitions are assigned, and cleans up old commands, until ctx
// ends; it then waits for the executions it started.
func (r *Router) Run(ctx context.Context) error {
	if r.d.Table == nil {
		return errUnbound
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxRunning)
	sweep := time.NewTicker(r.o.Sweep)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-sweep.C:
			r.sweep(ctx)
		}
		cmds, soonish := r.runnable(ctx)
		if soonish {
			// A partition is being taken over (its state is restored a
			// moment before the group marks it owned): look again shortly
			// rather than at the next sweep.
			time.AfterFunc(takeOverRetry, r.poke)
		}
		for _, c := range cmds {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				r.release(c.ID)
				return nil
			}
			wg.Go(func() {
				defer func() { <-sem }()
				r.execute(ctx, c)
			})
		}
	}
}

// runnable returns the pending commands this instance should run now and
// marks them running. soonish says some may be runnable in a moment: this
// instance is in the middle of taking their partition over.
func (r *Router) runnable(ctx context.Context) (out []Command, soonish bool) {
	r.mu.Lock()
	var cand []Command
	for id, c := range r.cmds {
		if !c.Final() && !isRunning(r.running, id) {
			cand = append(cand, *c)
		}
	}
	r.mu.Unlock()
	for _, c := range cand {
		p, w := r.where(ctx, c)
		if w == soon {
			soonish = true
		}
		if w != here {
			continue
		}
		r.mu.Lock()
		cur := r.cmds[c.ID]
		if cur == nil || cur.Final() || isRunning(r.running, c.ID) {
			r.mu.Unlock()
			continue
		}
		r.running[c.ID] = p
		r.mu.Unlock()
		out = append(out, c)
	}
	return out, soonish
}

func (r *Router) release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, id)
	close(r.idle)
	r.idle = make(chan struct{})
}

func isRunning(m map[string]int32, id string) bool {
	_, ok := m[id]
	return ok
}

func (r *Router) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// execute runs c once: it marks it handled first (clicks and verdicts),
// so a second copy, or the same click run by the owner's own handler,
// finds the mark and runs nothing. A crash between the mark and the
// action loses the click, as it does on one instance; the analyst saw no
// confirmation and clicks again.
func (r *Router) execute(ctx context.Context, c Command) {
	defer r.release(c.ID)
	log := r.o.Log.With("command", c.ID, "kind", c.Kind, "from", c.From)
	if key := c.dedupKey(); key != "" {
		first, err := r.d.Seen.MarkHandled(ctx, key)
		if err != nil {
			// Still pending: the next wake or sweep tries again.
			r.o.Metrics.count(c.Kind, "dedup_error")
			log.Warn("cannot mark the command handled; it is retried", "err", err)
			return
		}
		if !first {
			r.o.Metrics.count(c.Kind, "duplicate")
			log.Info("command already handled here; nothing runs (a retry)")
			r.finish(ctx, c, StateDuplicate, nil, nil)
			return
		}
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.execTimeout(c))
	res, err := r.d.Exec.Execute(ectx, c)
	cancel()
	if err != nil {
		r.o.Metrics.count(c.Kind, "failed")
		log.Warn("command failed", "err", err)
		r.finish(ctx, c, StateFailed, nil, err)
		return
	}
	r.o.Metrics.count(c.Kind, "executed")
	log.Info("command run for another instance")
	r.finish(ctx, c, StateDone, res, nil)
}

// execTimeout ends a run a little before its sender stops waiting, so the
// outcome (with the steps still running reported pending) reaches it.
func (r *Router) execTimeout(c Command) time.Duration {
	if c.DeadlineMs == 0 {
		return maxExec
	}
	d := time.UnixMilli(c.DeadlineMs).Sub(r.o.Now()) - time.Second
	return min(max(d, time.Second), maxExec)
}

// finish writes c's outcome. The action has run (or was a duplicate), so
// a failure to write only costs the waiting instance its answer: retried
// a few times, then logged.
func (r *Router) finish(ctx context.Context, c Command, state string, res json.RawMessage, err error) {
	c.State, c.By, c.DoneMs, c.Result = state, r.o.Instance, r.o.Now().UnixMilli(), res
	if err != nil {
		c.Error, c.ErrorKind = err.Error(), errKind(err)
	}
	b, merr := json.Marshal(c)
	if merr != nil {
		r.o.Log.Error("encode command outcome", "command", c.ID, "err", merr)
		return
	}
	wctx := context.WithoutCancel(ctx)
	var perr error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		if _, perr = r.d.Table.Put(wctx, Prefix+c.ID, b); perr == nil {
			return
		}
	}
	r.o.Log.Error("cannot write the command's outcome to the global table; the instance that received it stops waiting without it",
		"command", c.ID, "state", state, "err", perr)
}

func errKind(err error) string {
	switch {
	case errors.Is(err, slackui.ErrNotAllowed):
		return ErrKindNotAllowed
	case errors.Is(err, respapi.ErrNotFound):
		return ErrKindNotFound
	case errors.Is(err, respapi.ErrBadRequest):
		return ErrKindBadRequest
	case errors.Is(err, playbooks.ErrUnknownPlaybook):
		return ErrKindPlaybook
	case errors.Is(err, respapi.ErrConflict):
		return ErrKindConflict
	}
	return ""
}

// sweep expires the commands nobody ran within the TTL and deletes the
// finished ones after the retention. The instance responsible (the
// receiver for an expiry, the writer of the outcome for a delete) does it
// at once; any instance does it after twice as long, so that a command
// whose responsible instance is gone does not stay forever.
func (r *Router) sweep(ctx context.Context) {
	now := r.o.Now()
	var expire, del []Command
	r.mu.Lock()
	for id, c := range r.cmds {
		switch {
		case !c.Final() && !isRunning(r.running, id):
			age := now.Sub(c.at())
			if (c.From == r.o.Instance && age > r.o.TTL) || age > 2*r.o.TTL {
				expire = append(expire, *c)
			}
		case c.Final():
			age := now.Sub(time.UnixMilli(c.DoneMs))
			if (c.By == r.o.Instance && age > r.o.Retention) || age > 2*r.o.Retention {
				del = append(del, *c)
			}
		}
	}
	r.mu.Unlock()
	for _, c := range expire {
		r.o.Metrics.count(c.Kind, "expired")
		r.o.Log.Warn("command expired: no instance ran it in time", "command", c.ID, "kind", c.Kind, "from", c.From, "ttl", r.o.TTL)
		r.finish(ctx, c, StateExpired, nil, nil)
	}
	for _, c := range del {
		if _, err := r.d.Table.Delete(ctx, Prefix+c.ID); err != nil {
			r.o.Log.Warn("cannot delete an old command; the next sweep tries again", "command", c.ID, "err", err)
		}
	}
}

// Part adapts a Router to the per-partition state owner of the distributed
// responder (partstate.Owner's Part), which restores a partition's state
// before it activates the partition and revokes it before dropping the
// state: Activate runs the partition's pending commands, Revoke stops
// starting them and waits for those executing. Add it to the owner before
// the outbox, so that commands end before the outbox is drained.
type Part struct{ R *Router }

// PartPrefix is Part's changelog key prefix. No record has it: commands
// live in the global table, not in the partition's changelog.
const PartPrefix = "route:none/"

// Prefix implements partstate.Part.
func (Part) Prefix() string { return PartPrefix }

// Load implements partstate.Part; there is nothing to load.
func (Part) Load(int32, string, []byte) error { return nil }

// Activate implements partstate.Part.
func (pt Part) Activate(p int32) { pt.R.OnAssigned([]int32{p}) }

// Revoke implements partstate.Part.
func (pt Part) Revoke(ctx context.Context, p int32) error {
	pt.R.OnRevoked([]int32{p})
	return pt.R.Drain(ctx, p)
}

// Register has m hand the Router the global table's commands (keys under
// Prefix). Call it before the table is opened: its first read applies
// the commands still in it.
func (r *Router) Register(m *kstate.Mux) {
	m.Handle(Prefix, func(rec kstate.Record) { r.Apply(rec.Key, rec.Value) })
}

// DefaultInstance names this process for Options.Instance: host name and
// process id, unique among the instances of a deployment.
func DefaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}
