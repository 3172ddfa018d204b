package kafka

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// fastGroup is a config for tests: the broker's minimum session timeout and
// a heartbeat fast enough that rebalances are noticed in half a second.
func fastGroup(bs []string, topic, group string) GroupConfig {
	return GroupConfig{
		Brokers: bs, GroupID: group, Topic: topic,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		HeartbeatInterval: 500 * time.Millisecond,
	}
}

func newGroup(t *testing.T, cfg GroupConfig) *Group {
	t.Helper()
	g, err := NewGroup(cfg)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func nextGen(t *testing.T, ctx context.Context, g *Group) *Generation {
	t.Helper()
	gen, err := g.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return gen
}

// produce writes records seq from..from+n-1, keyed over 50 agents, with the
// seq in the value and a header.
func produce(t *testing.T, ctx context.Context, bs []string, topic string, from, n int) {
	t.Helper()
	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer w.Close()
	msgs := make([]bus.Message, n)
	for i := range msgs {
		seq := from + i
		msgs[i] = bus.Message{
			Key:     []byte("agent-" + strconv.Itoa(seq%50)),
			Value:   []byte(strconv.Itoa(seq)),
			Headers: []bus.Header{{Key: "seq", Value: []byte(strconv.Itoa(seq))}},
		}
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatalf("Write %d records: %v", n, err)
	}
}

// seqOf checks the mapping of a record read through a Generation and
// returns its seq.
func seqOf(t *testing.T, topic string, m bus.Message) int {
	t.Helper()
	seq, err := strconv.Atoi(string(m.Value))
	if err != nil || m.Topic != topic || string(m.HeaderValue("seq")) != string(m.Value) ||
		string(m.Key) != "agent-"+strconv.Itoa(seq%50) || m.Time.IsZero() {
		t.Fatalf("record %+v: want topic %s, value = seq header, key agent-<seq%%50>, a time", m, topic)
	}
	return seq
}

// committed asks the coordinator for the group's committed offsets.
func committed(t *testing.T, ctx context.Context, bs []string, group, topic string, parts ...int) map[int]int64 {
	t.Helper()
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&kafkago.Client{Addr: kafkago.TCP(bs...), Transport: tr}).OffsetFetch(ctx, &kafkago.OffsetFetchRequest{
		GroupID: group, Topics: map[string][]int{topic: parts},
	})
	if err != nil || res.Error != nil {
		t.Fatalf("OffsetFetch: %v %v", err, res.Error)
	}
	out := make(map[int]int64)
	for _, p := range res.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

func TestIntegrationGroupOneMemberResume(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 4)
	group := unique(t, "group")
	const n = 400
	produce(t, ctx, bs, topic, 0, n)

	seen := make(map[int]int)
	// read fetches k records, checking that each partition is read in
	// offset order with no gap, from want[p] on (the offset of the first
	// record of p a fresh group or the last commit points at).
	read := func(gen *Generation, k int, want map[int32]int64) map[int32]int64 {
		t.Helper()
		next := make(map[int32]int64)
		for i := range k {
			m, err := gen.Fetch(ctx)
			if err != nil {
				t.Fatalf("Fetch %d of %d: %v", i, k, err)
			}
			exp, ok := next[m.Partition]
			if !ok {
				exp = want[m.Partition]
			}
			if m.Offset != exp {
				t.Fatalf("partition %d: offset %d, want %d", m.Partition, m.Offset, exp)
			}
			next[m.Partition] = m.Offset + 1
			seen[seqOf(t, topic, m)]++
		}
		return next
	}

	start := time.Now()
	g1 := newGroup(t, fastGroup(bs, topic, group))
	gen := nextGen(t, ctx, g1)
	t.Logf("first member joined in %s: generation %d", time.Since(start), gen.ID())
	if got := gen.Partitions(); !slices.Equal(got, []int32{0, 1, 2, 3}) {
		t.Fatalf("one member owns %v, want all 4 partitions", got)
	}
	next := read(gen, 250, map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0})
	if err := gen.Commit(ctx, next); err != nil {
		t.Fatalf("Commit %v: %v", next, err)
	}
	if err := gen.Commit(ctx, map[int32]int64{7: 1}); err == nil {
		t.Error("Commit of a partition the member does not own: got nil error")
	}
	start = time.Now()
	if err := gen.Close(); err != nil {
		t.Fatalf("Generation.Close: %v", err)
	}
	t.Logf("Generation.Close with 4 partition readers took %s", time.Since(start))
	select {
	case <-gen.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if _, err := gen.Fetch(ctx); !errors.Is(err, ErrGenerationEnded) {
		t.Errorf("Fetch after Close: %v, want ErrGenerationEnded", err)
	}
	if err := gen.Commit(ctx, next); !errors.Is(err, ErrGenerationEnded) {
		t.Errorf("Commit after Close: %v, want ErrGenerationEnded", err)
	}
	if err := gen.Close(); err != nil {
		t.Errorf("second Generation.Close: %v", err)
	}
	if err := g1.Close(); err != nil {
		t.Fatalf("Group.Close: %v", err)
	}
	if _, err := g1.Next(ctx); !errors.Is(err, ErrGroupClosed) {
		t.Errorf("Next after Close: %v, want ErrGroupClosed", err)
	}

	// A new member of the same group resumes at the committed offsets.
	start = time.Now()
	g2 := newGroup(t, fastGroup(bs, topic, group))
	gen2 := nextGen(t, ctx, g2)
	t.Logf("second member joined in %s: generation %d", time.Since(start), gen2.ID())
	if got := gen2.Partitions(); len(got) != 4 {
		t.Fatalf("resumed member owns %v, want all 4 partitions", got)
	}
	read(gen2, n-250, next)
	for seq := range n {
		if seen[seq] != 1 {
			t.Fatalf("seq %d read %d times, want once", seq, seen[seq])
		}
	}
	quiet, qcancel := context.WithTimeout(ctx, time.Second)
	defer qcancel()
	if m, err := gen2.Fetch(quiet); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch on a drained topic: %+v, %v; want deadline exceeded", m, err)
	}
	// Group.Close closes the generation the caller left open.
	if err := g2.Close(); err != nil {
		t.Fatalf("Group.Close with an open generation: %v", err)
	}
	select {
	case <-gen2.Done():
	default:
		t.Error("Done of the open generation not closed by Group.Close")
	}
}

func TestIntegrationGroupSeek(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 2)
	produce(t, ctx, bs, topic, 0, 100)
	g := newGroup(t, fastGroup(bs, topic, unique(t, "group")))
	gen := nextGen(t, ctx, g)
	if err := gen.Seek(5, 0); err == nil {
		t.Error("Seek of an unassigned partition: got nil error")
	}
	if err := gen.Seek(0, -1); err == nil {
		t.Error("Seek to a negative offset: got nil error")
	}
	// Seek 0 twice: the last one counts.
	for _, s := range []struct {
		p   int32
		off int64
	}{{0, 1}, {0, 3}, {1, 7}} {
		if err := gen.Seek(s.p, s.off); err != nil {
			t.Fatalf("Seek(%d, %d): %v", s.p, s.off, err)
		}
	}
	want := map[int32]int64{0: 3, 1: 7}
	got := 0
	quiet, qcancel := context.WithTimeout(ctx, 3*time.Second)
	defer qcancel()
	for {
		m, err := gen.Fetch(quiet)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if m.Offset != want[m.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", m.Partition, m.Offset, want[m.Partition])
		}
		want[m.Partition]++
		got++
		if got == 1 {
			if err := gen.Seek(1, 0); err == nil {
				t.Error("Seek after the first Fetch: got nil error")
			}
		}
	}
	if got != 100-3-7 {
		t.Errorf("fetched %d records after seeking past 3 and 7, want %d", got, 100-3-7)
	}
}

func TestIntegrationGroupMoreMembersThanPartitions(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 1)
	group := unique(t, "group")
	a := startMember(t, ctx, "a", fastGroup(bs, topic, group))
	b := startMember(t, ctx, "b", fastGroup(bs, topic, group))
	latest := map[string]genInfo{}
	for latest["a"].id == 0 || latest["a"].id != latest["b"].id {
		select {
		case g := <-a.gens:
			latest["a"] = g
		case g := <-b.gens:
			latest["b"] = g
		case <-ctx.Done():
			t.Fatalf("a and b never in one generation: %+v", latest)
		}
	}
	if n := len(latest["a"].parts) + len(latest["b"].parts); n != 1 {
		t.Fatalf("generation %d: a owns %v, b owns %v; want one partition between them", latest["a"].id, latest["a"].parts, latest["b"].parts)
	}
	t.Logf("generation %d: a owns %v, b owns %v", latest["a"].id, latest["a"].parts, latest["b"].parts)
	produce(t, ctx, bs, topic, 0, 10)
	for range 10 {
		select {
		case r := <-a.recs:
			if len(latest["a"].parts) == 0 {
				t.Fatalf("a, with no partitions, fetched %+v", r.m)
			}
		case r := <-b.recs:
			if len(latest["b"].parts) == 0 {
				t.Fatalf("b, with no partitions, fetched %+v", r.m)
			}
		case <-ctx.Done():
			t.Fatal("records never arrived")
		}
	}
}

// member runs the consume loop a detector runs: Next, Fetch until the
// generation ends, commit in the revoke window, Close, Next.
type member struct {
	name   string
	g      *Group
	gens   chan genInfo
	recs   chan rec
	errs   chan error
	ended  chan struct{}
	commit atomic.Bool // commit every record right after fetching it
	revoke atomic.Bool // commit what was read in the revoke window
}

type genInfo struct {
	member string
	id     int32
	parts  []int32
	at     time.Time
	revoke error // result of the previous generation's revoke commit
}

type rec struct {
	member string
	gen    int32
	m      bus.Message
}

func startMember(t *testing.T, ctx context.Context, name string, cfg GroupConfig) *member {
	t.Helper()
	m := &member{
		name: name, g: newGroup(t, cfg),
		gens: make(chan genInfo, 16), recs: make(chan rec, 4096), errs: make(chan error, 16), ended: make(chan struct{}),
	}
	m.commit.Store(true)
	m.revoke.Store(true)
	go m.run(ctx)
	t.Cleanup(func() { _ = m.g.Close(); <-m.ended })
	return m
}

func (m *member) run(ctx context.Context) {
	defer close(m.ended)
	var revokeErr error
	for {
		gen, err := m.g.Next(ctx)
		if err != nil {
			if !errors.Is(err, ErrGroupClosed) && ctx.Err() == nil {
				m.errs <- fmt.Errorf("%s: Next: %w", m.name, err)
			}
			return
		}
		m.gens <- genInfo{member: m.name, id: gen.ID(), parts: gen.Partitions(), at: time.Now(), revoke: revokeErr}
		next := make(map[int32]int64)
		for {
			r, err := gen.Fetch(ctx)
			if err != nil {
				if !errors.Is(err, ErrGenerationEnded) && ctx.Err() == nil {
					m.errs <- fmt.Errorf("%s: Fetch: %w", m.name, err)
				}
				break
			}
			next[r.Partition] = r.Offset + 1
			if m.commit.Load() {
				if err := gen.Commit(ctx, map[int32]int64{r.Partition: r.Offset + 1}); err != nil && !errors.Is(err, ErrGenerationEnded) && ctx.Err() == nil {
					m.errs <- fmt.Errorf("%s: Commit: %w", m.name, err)
				}
			}
			m.recs <- rec{member: m.name, gen: gen.ID(), m: r}
		}
		revokeErr = nil
		if m.revoke.Load() && len(next) > 0 {
			revokeErr = gen.Commit(ctx, next)
		}
		_ = gen.Close()
	}
}

func TestIntegrationGroupTwoMembers(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 6)
	group := unique(t, "group")

	gens := make(chan genInfo, 64)
	recs := make(chan rec, 8192)
	var errsMu sync.Mutex
	var memberErrs []error
	fanIn := func(m *member) {
		go func() {
			for {
				select {
				case g := <-m.gens:
					gens <- g
				case r := <-m.recs:
					recs <- r
				case err := <-m.errs:
					errsMu.Lock()
					memberErrs = append(memberErrs, err)
					errsMu.Unlock()
				case <-m.ended:
					return
				}
			}
		}()
	}
	checkErrs := func() {
		t.Helper()
		errsMu.Lock()
		defer errsMu.Unlock()
		if err := errors.Join(memberErrs...); err != nil {
			t.Fatal(err)
		}
	}
	// got[seq] lists the members that fetched seq, in order.
	got := make(map[int][]rec)
	collect := func(total int) {
		t.Helper()
		for len(got) < total {
			select {
			case r := <-recs:
				s := seqOf(t, topic, r.m)
				got[s] = append(got[s], r)
			case <-ctx.Done():
				checkErrs()
				t.Fatalf("collected %d of %d records: %v", len(got), total, ctx.Err())
			}
		}
	}
	latest := map[string]genInfo{}
	waitGens := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case g := <-gens:
				t.Logf("%s: generation %d, partitions %v, revoke commit: %v", g.member, g.id, g.parts, g.revoke)
				if g.revoke != nil {
					t.Errorf("%s: commit in the revoke window before generation %d: %v", g.member, g.id, g.revoke)
				}
				latest[g.member] = g
			case <-ctx.Done():
				checkErrs()
				t.Fatalf("waiting for %s: %v (latest %+v)", what, ctx.Err(), latest)
			}
		}
	}
	owns := func(name string, n int) bool { return len(latest[name].parts) == n }

	produce(t, ctx, bs, topic, 0, 120)
	a := startMember(t, ctx, "a", fastGroup(bs, topic, group))
	fanIn(a)
	waitGens("a alone with all partitions", func() bool { return owns("a", 6) })
	collect(120)

	start := time.Now()
	b := startMember(t, ctx, "b", fastGroup(bs, topic, group))
	fanIn(b)
	waitGens("a and b in one generation", func() bool {
		return latest["a"].id == latest["b"].id && len(latest["a"].parts)+len(latest["b"].parts) == 6
	})
	t.Logf("second member joined and the group rebalanced in %s", time.Since(start))
	owner := make(map[int32]string)
	for _, name := range []string{"a", "b"} {
		for _, p := range latest[name].parts {
			if o, dup := owner[p]; dup {
				t.Fatalf("partition %d owned by %s and %s", p, o, name)
			}
			owner[p] = name
		}
	}
	if len(owner) != 6 || len(latest["a"].parts) != 3 {
		t.Fatalf("split %v / %v, want 3 and 3 covering 0..5", latest["a"].parts, latest["b"].parts)
	}

	// Settled: every record goes to the one owner of its partition.
	produce(t, ctx, bs, topic, 120, 300)
	collect(420)
	for seq := 120; seq < 420; seq++ {
		rs := got[seq]
		if len(rs) != 1 || rs[0].member != owner[rs[0].m.Partition] {
			t.Fatalf("seq %d fetched as %+v, want once by %s", seq, rs, owner[rs[0].m.Partition])
		}
	}

	// b stops committing, reads 300 more, then leaves: a takes over its
	// partitions from b's last commit, so it reads again what b read after
	// that, and nothing is lost.
	b.commit.Store(false)
	b.revoke.Store(false)
	produce(t, ctx, bs, topic, 420, 300)
	collect(720)
	uncommitted := make(map[int]bool)
	for seq := 420; seq < 720; seq++ {
		if got[seq][0].member == "b" {
			uncommitted[seq] = true
		}
	}
	start = time.Now()
	if err := b.g.Close(); err != nil {
		t.Fatalf("close b: %v", err)
	}
	t.Logf("b's Group.Close (leave group) took %s", time.Since(start))
	waitGens("a alone again", func() bool { return owns("a", 6) })
	t.Logf("a owns all partitions %s after b's Close", time.Since(start))
	produce(t, ctx, bs, topic, 720, 60)
	// Wait for the new records and every redelivery.
	deadline := time.After(15 * time.Second)
	for redelivered := 0; ; {
		redelivered = 0
		for seq := range uncommitted {
			if len(got[seq]) == 2 {
				redelivered++
			}
		}
		if len(got) == 780 && redelivered == len(uncommitted) {
			break
		}
		select {
		case r := <-recs:
			s := seqOf(t, topic, r.m)
			got[s] = append(got[s], r)
		case <-deadline:
			t.Fatalf("after b left: %d of 780 records, %d of %d redelivered", len(got), redelivered, len(uncommitted))
		}
	}
	checkErrs()
	for seq := range 780 {
		rs := got[seq]
		switch {
		case uncommitted[seq]:
			if len(rs) != 2 || rs[1].member != "a" {
				t.Fatalf("seq %d read after b's last commit: fetched as %+v, want b then a", seq, rs)
			}
		case len(rs) != 1:
			t.Fatalf("seq %d fetched %d times (%+v), want once: it was committed", seq, len(rs), rs)
		case seq >= 720 && rs[0].member != "a":
			t.Fatalf("seq %d fetched by %s after b left", seq, rs[0].member)
		}
	}
	t.Logf("%d records after b's last commit were redelivered to a; none lost", len(uncommitted))
}

func TestIntegrationGroupCommitAfterDone(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 2)
	group := unique(t, "group")
	produce(t, ctx, bs, topic, 0, 40)

	// A short rebalance timeout, so that holding the generation open past
	// it (a member that never finishes its revoke) is quick to show.
	cfg := fastGroup(bs, topic, group)
	cfg.RebalanceTimeout = 3 * time.Second
	a := newGroup(t, cfg)
	gen := nextGen(t, ctx, a)
	// The next offsets after the first 10 records, and after all 40.
	early, all := map[int32]int64{0: 0, 1: 0}, map[int32]int64{0: 0, 1: 0}
	for i := range 40 {
		m, err := gen.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch %d: %v", i, err)
		}
		if i < 10 {
			early[m.Partition] = m.Offset + 1
		}
		all[m.Partition] = m.Offset + 1
	}

	// A second member joins: a's generation ends at a's next heartbeat.
	b := newGroup(t, cfg)
	bgen := make(chan *Generation, 1)
	go func() {
		gen, err := b.Next(ctx)
		if err != nil {
			t.Errorf("b.Next: %v", err)
		}
		bgen <- gen
	}()
	start := time.Now()
	select {
	case <-gen.Done():
	case <-ctx.Done():
		t.Fatal("a's generation never ended after b joined")
	}
	t.Logf("a's Done closed %s after b started joining", time.Since(start))
	if _, err := gen.Fetch(ctx); !errors.Is(err, ErrGenerationEnded) {
		t.Fatalf("Fetch after Done: %v, want ErrGenerationEnded", err)
	}
	// The revoke window: the group waits for a to rejoin, and a's commit
	// with the ending generation's id is accepted.
	if err := gen.Commit(ctx, early); err != nil {
		t.Fatalf("Commit after Done, before Close: %v", err)
	}
	if got := committed(t, ctx, bs, group, topic, 0, 1); got[0] != early[0] || got[1] != early[1] {
		t.Fatalf("committed %v after the revoke-window commit, want %v", got, early)
	}
	t.Logf("commit in the revoke window accepted: %v", early)

	// a never calls Close: once the rebalance timeout has passed the
	// coordinator drops a and b gets both partitions, at a's commit.
	var bg *Generation
	select {
	case bg = <-bgen:
	case <-ctx.Done():
		t.Fatal("b never joined")
	}
	if bg == nil {
		t.FailNow()
	}
	t.Logf("b joined %s after it started, with %v (a held its generation open)", time.Since(start), bg.Partitions())
	if len(bg.Partitions()) != 2 {
		t.Fatalf("b owns %v, want both partitions after a was dropped", bg.Partitions())
	}
	err := gen.Commit(ctx, all)
	if !errors.Is(err, ErrGenerationEnded) {
		t.Fatalf("Commit after the group moved on: %v, want ErrGenerationEnded", err)
	}
	t.Logf("late commit refused: %v", err)
	if got := committed(t, ctx, bs, group, topic, 0, 1); got[0] != early[0] || got[1] != early[1] {
		t.Fatalf("committed %v after the refused commit, want still %v", got, early)
	}
	_ = gen.Close()
	// b resumes at a's revoke-window commit.
	n := 0
	for p, off := range early {
		n += int(all[p] - off)
	}
	want := maps.Clone(early)
	for i := range n {
		m, err := bg.Fetch(ctx)
		if err != nil {
			t.Fatalf("b Fetch %d of %d: %v", i, n, err)
		}
		if m.Offset != want[m.Partition] {
			t.Fatalf("b: partition %d offset %d, want %d", m.Partition, m.Offset, want[m.Partition])
		}
		want[m.Partition]++
	}
	// a can come back: it rejoins under a new member id.
	_ = b.Close()
	start = time.Now()
	agen := nextGen(t, ctx, a)
	t.Logf("a rejoined in %s: generation %d with %v", time.Since(start), agen.ID(), agen.Partitions())
}

// TestGroupHelperProcess is a group member run in a child process by
// TestIntegrationGroupKilledMember, so the test can SIGKILL it. It does
// nothing in a normal test run.
func TestGroupHelperProcess(t *testing.T) {
	if os.Getenv("AGENTWATCH_GROUP_HELPER") != "1" {
		return
	}
	ctx := context.Background()
	g, err := NewGroup(GroupConfig{
		Brokers: strings.Split(os.Getenv("TEST_KAFKA_BROKERS"), ","),
		GroupID: os.Getenv("HELPER_GROUP"), Topic: os.Getenv("HELPER_TOPIC"),
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for {
		gen, err := g.Next(ctx)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("gen", gen.ID(), len(gen.Partitions()))
		for {
			m, err := gen.Fetch(ctx)
			if err != nil {
				break
			}
			if err := gen.Commit(ctx, map[int32]int64{m.Partition: m.Offset + 1}); err != nil {
				fmt.Println("error", err)
			}
			fmt.Println("rec", string(m.Value))
		}
		_ = gen.Close()
	}
}

func TestIntegrationGroupKilledMember(t *testing.T) {
	bs := brokers(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 4)
	group := unique(t, "group")

	// Default timings: how long a dead member's partitions go unread is
	// what this test measures.
	a := startMember(t, ctx, "a", GroupConfig{Brokers: bs, GroupID: group, Topic: topic})
	waitOwn := func(n int) genInfo {
		t.Helper()
		for {
			select {
			case g := <-a.gens:
				if len(g.parts) == n {
					return g
				}
			case err := <-a.errs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("a never owned %d partitions", n)
			}
		}
	}
	waitOwn(4)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestGroupHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AGENTWATCH_GROUP_HELPER=1", "HELPER_GROUP="+group, "HELPER_TOPIC="+topic)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitOwn(2)
	for helperParts := 0; helperParts != 2; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper exited")
			}
			t.Logf("helper: %s", l)
			if f := strings.Fields(l); len(f) == 3 && f[0] == "gen" {
				helperParts, _ = strconv.Atoi(f[2])
			}
		case <-ctx.Done():
			t.Fatal("helper never owned 2 partitions")
		}
	}

	// Both read their share and commit every record.
	produce(t, ctx, bs, topic, 0, 40)
	seen := make(map[int]string)
	for len(seen) < 40 {
		select {
		case r := <-a.recs:
			seen[seqOf(t, topic, r.m)] = "a"
		case l := <-lines:
			if s, ok := strings.CutPrefix(l, "rec "); ok {
				seq, _ := strconv.Atoi(s)
				seen[seq] = "helper"
			} else if strings.HasPrefix(l, "error") {
				t.Fatalf("helper: %s", l)
			}
		case <-ctx.Done():
			t.Fatalf("read %d of 40 records", len(seen))
		}
	}

	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no LeaveGroup
		t.Fatal(err)
	}
	g := waitOwn(4)
	took := g.at.Sub(killed)
	t.Logf("after SIGKILL of the other member, a owned all partitions in %s (session timeout %s, heartbeat %s)",
		took, defaultSessionTimeout, defaultHeartbeatInterval)
	if took < defaultSessionTimeout-2*defaultHeartbeatInterval || took > defaultSessionTimeout+5*time.Second {
		t.Errorf("takeover after %s, want about the session timeout %s", took, defaultSessionTimeout)
	}
	// a resumes at the helper's commits: only new records arrive.
	produce(t, ctx, bs, topic, 40, 20)
	for n := 0; n < 20; {
		select {
		case r := <-a.recs:
			if seq := seqOf(t, topic, r.m); seq < 40 {
				t.Fatalf("seq %d (read by %s and committed) fetched again by a", seq, seen[seq])
			}
			n++
		case err := <-a.errs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatalf("a read %d of 20 new records", n)
		}
	}
}
