package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// ErrGenerationEnded means the group is rebalancing (or the Group was
// closed) and this member's partitions are revoked. React by snapshotting
// per-partition state, committing what it covers, closing the Generation
// and calling Group.Next. A Commit that returns it came too late: the group
// has moved on, so the partition's new owner resumes from the previous
// commit and the records after it are delivered again.
var ErrGenerationEnded = errors.New("consumer group generation ended")

// ErrGroupClosed is returned by Group.Next after Group.Close.
var ErrGroupClosed = errors.New("consumer group closed")

// GroupConfig configures a Group. Zero values of the tuning fields pick
// the defaults noted on each.
type GroupConfig struct {
	Brokers []string
	// Security is how the brokers are reached (default plaintext).
	Security Security
	// GroupID is the consumer group; it keeps the committed offsets.
	GroupID string
	// Topic is the one topic whose partitions the group divides.
	Topic string
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it declares a member dead and gives its partitions to the
	// others: the time a killed process's partitions go unread (default
	// 10s; at least 6s, the broker's default group.min.session.timeout.ms).
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for every member
	// to rejoin once a rebalance starts, so it bounds the commit-on-revoke
	// window: a member that takes longer between Done and Generation.Close
	// is dropped from the group and its late Commit fails (default 30s).
	RebalanceTimeout time.Duration
	// HeartbeatInterval is how often a member checks in. kafka-go learns
	// that a rebalance started only from a heartbeat answer, so this is
	// also how late Done can close after another member joins or leaves
	// (default 1s; must be below SessionTimeout).
	HeartbeatInterval time.Duration
	// MinBytes is the least data a partition fetch waits for (default 1).
	MinBytes int
	// MaxBytes caps one partition fetch response (default 10 MiB).
	MaxBytes int
	// MaxWait bounds how long a partition fetch waits for MinBytes
	// (default 500ms); it also bounds how long Generation.Close waits for
	// an in-flight fetch.
	MaxWait time.Duration
	// Logger receives lifecycle logs (joins, generations) and kafka-go's
	// retried errors; nil discards them.
	Logger *slog.Logger
}

// Defaults for GroupConfig's zero values and the broker limit checked.
const (
	defaultSessionTimeout    = 10 * time.Second
	defaultRebalanceTimeout  = 30 * time.Second
	defaultHeartbeatInterval = time.Second
	// DefaultHeartbeatInterval is GroupConfig.HeartbeatInterval's default.
	DefaultHeartbeatInterval = defaultHeartbeatInterval
	// minSessionTimeout is the broker's default group.min.session.timeout.ms;
	// a shorter session is refused at join time with InvalidSessionTimeout.
	minSessionTimeout = 6 * time.Second
	// groupQueue bounds the records read ahead for all partitions of one
	// generation together (kafka-go queues up to 100 more per partition).
	groupQueue = 1000
)

// Validate reports every problem in the config at once.
func (c GroupConfig) Validate() error {
	errs := appendConsumerErrs(nil, c.Brokers, c.GroupID)
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: required"))
	}
	session := orDur(c.SessionTimeout, defaultSessionTimeout)
	if session < minSessionTimeout {
		errs = append(errs, fmt.Errorf("session_timeout: must be at least %s (the broker's default group.min.session.timeout.ms), got %s", minSessionTimeout, session))
	}
	if c.RebalanceTimeout < 0 {
		errs = append(errs, fmt.Errorf("rebalance_timeout: must not be negative, got %s", c.RebalanceTimeout))
	}
	if hb := orDur(c.HeartbeatInterval, defaultHeartbeatInterval); hb < 0 || hb >= session {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be positive and below session_timeout %s, got %s; a third of it or less is usual", session, hb))
	}
	errs = appendFetchErrs(errs, c.MinBytes, c.MaxBytes, c.MaxWait)
	return errors.Join(errs...)
}

// Group is a member of a consumer group that sees its partition
// assignment: each Next returns a Generation that names the partitions this
// member owns until the next rebalance, reads only those, and commits only
// when told to. Unlike Reader it lets a stateful consumer restore state when
// partitions are assigned and snapshot and commit it when they are revoked.
//
// Rebalances are eager (kafka-go speaks the classic protocol with the
// range and round-robin assignors): every rebalance revokes every
// partition from every member, even those it gets back.
//
// Next, Close and the current Generation's methods are safe for concurrent
// use, but one goroutine normally runs the loop Next → Fetch/Commit →
// Done → Commit → Generation.Close → Next, and to stop: Commit, then
// Group.Close. The caller owns the Group and must Close it, which leaves
// the group.
type Group struct {
	cfg    GroupConfig
	cg     *kafkago.ConsumerGroup
	dialer *kafkago.Dialer
	log    *slog.Logger
	info   kafkago.Logger
	errs   kafkago.Logger

	mu     sync.Mutex
	cur    *Generation
	closed bool

	closeOnce sync.Once
}

// NewGroup validates cfg and starts joining the group in the background;
// the first Next waits for the join.
func NewGroup(cfg GroupConfig) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka group config: %w", err)
	}
	// One line per setting on purpose: each has its own default.
	cfg.SessionTimeout = orDur(cfg.SessionTimeout, defaultSessionTimeout)
	cfg.RebalanceTimeout = orDur(cfg.RebalanceTimeout, defaultRebalanceTimeout)
	cfg.HeartbeatInterval = orDur(cfg.HeartbeatInterval, defaultHeartbeatInterval)
	cfg.MinBytes = orInt(cfg.MinBytes, defaultMinBytes)
	cfg.MaxBytes = orInt(cfg.MaxBytes, defaultMaxBytes)
	cfg.MaxWait = orDur(cfg.MaxWait, defaultMaxWait)
	log := orDiscard(cfg.Logger).With("group", cfg.GroupID, "topic", cfg.Topic)
	g := &Group{
		cfg:    cfg,
		dialer: cfg.Security.dialer(10 * time.Second),
		log:    log,
	}
	g.info, g.errs = loggers(log)
	cc := kafkago.ConsumerGroupConfig{
		ID:                g.cfg.GroupID,
		Brokers:           cfg.Brokers,
		Dialer:            g.dialer,
		Topics:            []string{cfg.Topic},
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		// kafka-go's 5s would keep a member out for 5s after each failed join.
		JoinGroupBackoff: time.Second,
		// Partitions added to the topic end the generation, so the next
		// one includes them.
		WatchPartitionChanges: true,
		StartOffset:           kafkago.FirstOffset,
		Logger:                g.info,
		ErrorLogger:           g.errs,
	}
	cg, err := kafkago.NewConsumerGroup(cc)
	if err != nil {
		return nil, fmt.Errorf("kafka group config: %w", err)
	}
	g.cg = cg
	log.Info("kafka group created", "brokers", cfg.Brokers, "security", cfg.Security, "session_timeout", cfg.SessionTimeout,
		"rebalance_timeout", cfg.RebalanceTimeout, "heartbeat_interval", cfg.HeartbeatInterval)
	return g, nil
}

// Next blocks until this member is in the next generation of the group and
// returns it. A previous Generation that is still open is closed first
// (without a commit), because the group cannot move on while it is open.
// Join errors the coordinator may recover from (a rebalance in progress, an
// expired member id, an unreachable broker) are logged and retried; a
// config the broker refuses is returned. After Close it returns
// ErrGroupClosed; when ctx ends, ctx's error.
func (g *Group) Next(ctx context.Context) (*Generation, error) {
	g.mu.Lock()
	prev, closed := g.cur, g.closed
	g.mu.Unlock()
	if closed {
		return nil, ErrGroupClosed
	}
	if prev != nil {
		_ = prev.Close()
		prev.release()
	}
	for fails := 0; ; {
		kg, err := g.cg.Next(ctx)
		switch {
		case err == nil:
		case errors.Is(err, kafkago.ErrGroupClosed):
			return nil, ErrGroupClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case permanentJoinError(err):
			return nil, fmt.Errorf("join group %s: %w; check the group settings against the broker's group.* limits and ACLs", g.cfg.GroupID, err)
		default:
			// kafka-go backs off and retries by itself; log the first
			// failure and then every power of two, not one line a second.
			fails++
			if fails&(fails-1) == 0 {
				g.log.Warn("kafka group join retrying", "attempt", fails, "err", err)
			}
			continue
		}
		gen := g.newGeneration(kg)
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			_ = gen.Close()
			gen.release()
			return nil, ErrGroupClosed
		}
		g.cur = gen
		g.mu.Unlock()
		g.log.Info("kafka group generation joined", "generation", gen.id, "member", kg.MemberID, "partitions", gen.parts)
		return gen, nil
	}
}

// permanentJoinError reports the join errors that retrying cannot fix.
func permanentJoinError(err error) bool {
	for _, e := range []kafkago.Error{
		kafkago.InvalidSessionTimeout, kafkago.InvalidGroupId, kafkago.InconsistentGroupProtocol,
		kafkago.GroupAuthorizationFailed, kafkago.TopicAuthorizationFailed, kafkago.UnsupportedVersion,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Close closes the current Generation (a commit still pending there is
// the caller's to finish first) and leaves the group, so the partitions
// move to the other members right away instead of after the session
// timeout. It waits for every goroutine and connection of the Group to
// end; during a rebalance that includes the join kafka-go has begun, which
// may take up to the rebalance timeout. Idempotent.
func (g *Group) Close() error {
	// The once-and-mark-closed opening is Generation.Close's too: the
	// common idiom, with a different teardown after it.
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		cur := g.cur
		g.mu.Unlock()
		// kafka-go must see the group closed before it sees the generation
		// end; the other order makes it join a new generation first, one
		// more rebalance for the other members.
		left := make(chan struct{})
		go func() {
			_ = g.cg.Close() // always nil
			close(left)
		}()
		if cur != nil {
			_ = cur.Close()
			select {
			case <-cur.kgDone: // kafka-go ended it on seeing the group closed
			case <-left:
			}
			cur.release()
		}
		<-left
		g.log.Info("kafka group closed")
	})
	return nil
}

// Generation is one member's share of one consumer group generation: the
// partitions it owns until the next rebalance. Fetch is for one goroutine;
// Commit, Seek, Partitions, Done and Close may be called from any. The
// Group hands it out and Group.Next or Group.Close closes it if the caller
// has not.
type Generation struct {
	g     *Group
	kg    *kafkago.Generation
	id    int32
	parts []int32
	// kgDone is closed by kafka-go when a heartbeat finds a rebalance (or
	// fails), when the Group closes, or once hold is released.
	kgDone <-chan struct{}
	ctx    context.Context // kafka-go's generation context
	// hold is closed by release, which ends the function kafka-go waits
	// for before it rejoins or leaves and closes the coordinator
	// connection that Commit uses.
	hold        chan struct{}
	releaseOnce sync.Once
	closing     chan struct{} // closed by Close
	done        chan struct{} // closed once kgDone or closing is
	recs        chan fetched

	mu      sync.Mutex
	start   map[int32]int64 // next offset per owned partition
	started bool
	closed  bool
	cancel  context.CancelFunc // stops the partition readers
	readers sync.WaitGroup
	commits sync.WaitGroup
	errs    []error // from closing the partition readers

	closeOnce sync.Once
	closeErr  error
}

type fetched struct {
	m   bus.Message
	err error
}

func (g *Group) newGeneration(kg *kafkago.Generation) *Generation {
	gen := &Generation{
		g:       g,
		kg:      kg,
		id:      kg.ID,
		hold:    make(chan struct{}),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		recs:    make(chan fetched, groupQueue),
		start:   make(map[int32]int64),
	}
	for _, pa := range kg.Assignments[g.cfg.Topic] {
		gen.parts = append(gen.parts, int32(pa.ID))
		gen.start[int32(pa.ID)] = pa.Offset // committed, or FirstOffset
	}
	slices.Sort(gen.parts)
	// kafka-go closes the generation's connection to the coordinator, and
	// so ends Commit, only once every function given to Start has
	// returned. This one returns on release, after Close, which opens the
	// commit-on-revoke window between Done and Close.
	ctxs := make(chan context.Context, 1)
	kg.Start(func(ctx context.Context) {
		ctxs <- ctx
		<-gen.hold
	})
	gen.ctx = <-ctxs
	gen.kgDone = gen.ctx.Done()
	go func() { // ends by Close at the latest
		select {
		case <-gen.kgDone:
		case <-gen.closing:
		}
		close(gen.done)
	}()
	return gen
}

// release lets kafka-go end the generation and go on to rejoin or leave.
// It is called after Close, by Group.Next or Group.Close: not by Close
// itself, because a Close followed by Group.Close would otherwise make
// kafka-go rejoin once (a rebalance for every other member) before it saw
// the group closed and left (another one).
func (gen *Generation) release() {
	gen.releaseOnce.Do(func() {
		close(gen.hold)
		<-gen.kgDone // kafka-go closes it as soon as the held function returns
	})
}

// ID returns the generation id the coordinator assigned.
func (gen *Generation) ID() int32 { return gen.id }

// Partitions returns this member's partitions of the topic, sorted. It may
// be empty when the group has more members than partitions. The caller may
// keep and modify the slice.
func (gen *Generation) Partitions() []int32 { return slices.Clone(gen.parts) }

// Done is closed when the generation ends: a rebalance started (noticed
// at the next heartbeat), the Group was closed, or Close was called. Fetch
// then fails, but Commit works until Close.
func (gen *Generation) Done() <-chan struct{} { return gen.done }

// Seek makes partition p start at offset instead of the group's committed
// offset; the detector uses it when its own checkpoint is elsewhere. It
// commits nothing. It must come before the first Fetch of the generation,
// which starts reading every partition.
func (gen *Generation) Seek(p int32, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("seek partition %d: offset must not be negative, got %d", p, offset)
	}
	gen.mu.Lock()
	defer gen.mu.Unlock()
	switch _, owned := gen.start[p]; {
	case gen.closed:
		return fmt.Errorf("seek partition %d: generation %d is closed", p, gen.id)
	case !owned:
		return fmt.Errorf("seek partition %d: not assigned to this member in generation %d (own %v)", p, gen.id, gen.parts)
	case gen.started:
		return fmt.Errorf("seek partition %d: generation %d is already fetching; seek every partition before the first Fetch", p, gen.id)
	}
	gen.start[p] = offset
	return nil
}

// Fetch returns the next record of any owned partition; the records of one
// partition come in offset order, starting at the group's committed offset
// (the earliest offset when none is committed) or where Seek said. Once
// Done is closed it returns an error wrapping ErrGenerationEnded, without
// handing out records already read ahead; when ctx ends, ctx's error. A
// partition's read error (its leader unreachable after kafka-go's retries)
// is returned once; the partition goes on retrying, so Fetch may be called
// again. The first call starts one reader per partition.
func (gen *Generation) Fetch(ctx context.Context) (bus.Message, error) {
	select {
	case <-gen.done:
		return bus.Message{}, fmt.Errorf("fetch from generation %d: %w", gen.id, ErrGenerationEnded)
	default:
	}
	if err := gen.startReaders(); err != nil {
		return bus.Message{}, err
	}
	select {
	case <-ctx.Done():
		return bus.Message{}, ctx.Err()
	case <-gen.done:
		return bus.Message{}, fmt.Errorf("fetch from generation %d: %w", gen.id, ErrGenerationEnded)
	case f := <-gen.recs:
		return f.m, f.err
	}
}

func (gen *Generation) startReaders() error {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	if gen.closed {
		return fmt.Errorf("fetch from generation %d: closed: %w", gen.id, ErrGenerationEnded)
	}
	if gen.started {
		return nil
	}
	cfg := gen.g.cfg
	readers := make([]*kafkago.Reader, 0, len(gen.parts))
	for _, p := range gen.parts {
		rc := kafkago.ReaderConfig{
			Brokers:   cfg.Brokers,
			Topic:     cfg.Topic,
			Partition: int(p),
			Dialer:    gen.g.dialer,
			MinBytes:  cfg.MinBytes,
			MaxBytes:  cfg.MaxBytes,
			MaxWait:   cfg.MaxWait,
			Logger:    gen.g.info,
			// Errors are retried by kafka-go and logged as Warn, like
			// Reader's.
			ErrorLogger: gen.g.errs,
		}
		if err := rc.Validate(); err != nil { // NewReader panics on a bad config
			return fmt.Errorf("reader for partition %d: %w", p, err)
		}
		r := kafkago.NewReader(rc)
		if err := r.SetOffset(gen.start[p]); err != nil {
			_ = r.Close()
			for _, r := range readers {
				_ = r.Close()
			}
			return fmt.Errorf("start partition %d at offset %d: %w", p, gen.start[p], err)
		}
		readers = append(readers, r)
	}
	// The readers stop when the generation ends or on Close, whichever
	// comes first: a revoked partition must not be read any further.
	ctx, cancel := context.WithCancel(gen.ctx)
	gen.cancel = cancel
	gen.started = true
	for i, r := range readers {
		gen.readers.Add(1)
		go gen.readPartition(ctx, gen.parts[i], r)
	}
	return nil
}

// readPartition feeds recs from one partition until ctx ends, then closes
// r. The single goroutine per partition keeps its records in offset order.
func (gen *Generation) readPartition(ctx context.Context, p int32, r *kafkago.Reader) {
	defer gen.readers.Done()
	defer func() {
		if err := r.Close(); err != nil {
			gen.mu.Lock()
			gen.errs = append(gen.errs, fmt.Errorf("close reader of partition %d: %w", p, err))
			gen.mu.Unlock()
		}
	}()
	for {
		m, err := r.FetchMessage(ctx)
		var f fetched
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			f.err = fmt.Errorf("fetch partition %d of %s: %w", p, gen.g.cfg.Topic, err)
		default:
			f.m = fromKafka(m)
		}
		select {
		case gen.recs <- f:
		case <-ctx.Done():
			return
		}
	}
}

// Commit commits, per owned partition, the next offset to read, and
// returns once the coordinator answered or ctx ended (the request may then
// still land). It works after Done is closed until Close: that is the
// window to commit what a snapshot of revoked partitions covers. When the
// group has already moved on (the commit came later than the rebalance
// timeout, or this member was expired), the error wraps both
// ErrGenerationEnded and kafka-go's IllegalGeneration or UnknownMemberId.
func (gen *Generation) Commit(ctx context.Context, next map[int32]int64) error {
	if len(next) == 0 {
		return nil
	}
	offsets := make(map[int]int64, len(next))
	for p, off := range next {
		if _, owned := slices.BinarySearch(gen.parts, p); !owned {
			return fmt.Errorf("commit partition %d: not assigned to this member in generation %d (own %v)", p, gen.id, gen.parts)
		}
		if off < 0 {
			return fmt.Errorf("commit partition %d: offset must not be negative, got %d", p, off)
		}
		offsets[int(p)] = off
	}
	gen.mu.Lock()
	if gen.closed {
		gen.mu.Unlock()
		return fmt.Errorf("commit to generation %d: closed: %w; commit before Close", gen.id, ErrGenerationEnded)
	}
	gen.commits.Add(1)
	gen.mu.Unlock()

	// kafka-go's CommitOffsets takes no context; its coordinator
	// connection has a 5s deadline per request.
	res := make(chan error, 1)
	go func() {
		defer gen.commits.Done()
		res <- gen.kg.CommitOffsets(map[string]map[int]int64{gen.g.cfg.Topic: offsets})
	}()
	var err error
	select {
	case err = <-res:
	case <-ctx.Done():
		return fmt.Errorf("commit %d offsets to generation %d: %w", len(offsets), gen.id, ctx.Err())
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kafkago.IllegalGeneration), errors.Is(err, kafkago.UnknownMemberId):
		return fmt.Errorf("commit %d offsets to generation %d: %w: %w", len(offsets), gen.id, ErrGenerationEnded, err)
	}
	return fmt.Errorf("commit %d offsets to generation %d: %w", len(offsets), gen.id, err)
}

// Close waits for commits in flight, stops the partition readers and
// closes Done. The group rejoins at the next Group.Next (which this member
// should call right away: a rebalance waits for every member, up to the
// rebalance timeout) or leaves at Group.Close. Idempotent; the error is from
// closing the partition readers.
func (gen *Generation) Close() error {
	// Opens like Group.Close (once, then mark closed); the teardown differs.
	gen.closeOnce.Do(func() {
		gen.mu.Lock()
		gen.closed = true
		cancel := gen.cancel
		gen.mu.Unlock()
		gen.commits.Wait()
		if cancel != nil {
			cancel()
		}
		gen.readers.Wait()
		close(gen.closing)
		<-gen.done
		gen.mu.Lock()
		gen.closeErr = errors.Join(gen.errs...)
		gen.mu.Unlock()
		gen.g.log.Info("kafka group generation closed", "generation", gen.id)
	})
	return gen.closeErr
}
