package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// IncidentPrefix is the changelog key prefix of incidents: an incident's
// record key is IncidentPrefix + Incident.ID.
const IncidentPrefix = "i/"

// changelogWriteTimeout bounds one incident write to the changelog; the
// incidents' methods take no context of their own.
const changelogWriteTimeout = 30 * time.Second

// incidentLog is where the distributed mode keeps incidents: the
// partition of the incident's agent in the state changelog.
type incidentLog struct {
	cl     partstate.Changelog
	partOf func(agentID string) int32
	// writers group each partition's incident writes (incidentWriter).
	writers []*incidentWriter
	// loading holds, per partition being restored, the incidents read so
	// far (by id).
	loading map[int32]map[string]*Incident
}

// newPartIncidents returns incidents kept in cl, empty until partitions
// are restored into them (they are a partstate.Part).
func newPartIncidents(cl partstate.Changelog, partOf func(string) int32) *incidents {
	return &incidents{byAgent: map[string]*Incident{}, byID: map[string]*Incident{}, unsaved: map[string]bool{},
		log: newIncidentLog(cl, partOf)}
}

func newIncidentLog(cl partstate.Changelog, partOf func(string) int32) *incidentLog {
	l := &incidentLog{cl: cl, partOf: partOf, writers: make([]*incidentWriter, cl.Partitions()), loading: map[int32]map[string]*Incident{}}
	for p := range l.writers {
		l.writers[p] = newIncidentWriter(cl, int32(p))
	}
	return l
}

var _ partstate.Part = (*incidents)(nil)

// Prefix implements partstate.Part.
func (s *incidents) Prefix() string { return IncidentPrefix }

// Load implements partstate.Part.
func (s *incidents) Load(p int32, id string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return fmt.Errorf("incidents: not kept in a changelog")
	}
	m := s.log.loading[p]
	if m == nil {
		m = map[string]*Incident{}
		s.log.loading[p] = m
	}
	if len(value) == 0 {
		delete(m, id)
		return nil
	}
	var in Incident
	if err := json.Unmarshal(value, &in); err != nil {
		return fmt.Errorf("decode incident: %w", err)
	}
	if in.ID != id {
		return fmt.Errorf("incident under key %q names id %q", id, in.ID)
	}
	m[id] = &in
	return nil
}

// Activate implements partstate.Part.
func (s *incidents) Activate(p int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.log.loading[p] {
		s.index(in)
	}
	delete(s.log.loading, p)
}

// Revoke implements partstate.Part. Incidents have no running work of
// their own (the outbox entries that update them are drained first), so
// it only drops the partition's incidents.
func (s *incidents) Revoke(_ context.Context, p int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.log.loading, p)
	for id, in := range s.byID {
		if s.log.partOf(in.AgentID) != p {
			continue
		}
		delete(s.byID, id)
		if s.byAgent[in.AgentID] == in {
			delete(s.byAgent, in.AgentID)
		}
	}
	return nil
}

// Compact writes the tombstones of the incidents past their retention
// that hold no revocation, and forgets them. It returns how many it
// dropped.
func (s *incidents) Compact(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nowMs := time.Now().UnixMilli()
	n := 0
	for id, in := range s.byID {
		if nowMs-in.LastMs <= incidentRetention.Milliseconds() || len(in.Revoked) > 0 {
			continue
		}
		// Through the incident's writer, so that the tombstone cannot
		// pass a state of the incident queued before it.
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := s.log.queue(id, in.AgentID, nil)(); err != nil {
			return n, fmt.Errorf("drop old incident %s: %w", id, err)
		}
		delete(s.byID, id)
		if s.byAgent[in.AgentID] == in {
			delete(s.byAgent, in.AgentID)
		}
		n++
	}
	return n, nil
}

// queue queues an incident's state b (nil: its tombstone) for its agent's
// changelog partition and returns the wait for it to be durable. Call it
// under incidents.mu, right after encoding b, so that an incident's states
// are queued in the order they were made; wait without it.
func (l *incidentLog) queue(id, agentID string, b []byte) (wait func() error) {
	return l.writers[l.partOf(agentID)].queue(id, b)
}

// incidentWriter writes one partition's incident states, a group commit
// that also coalesces: the states queued while a write is out go in the
// next one, and of several states of one incident queued meanwhile only
// the last is written (each record holds the whole incident, so the last
// one says everything the earlier ones did). A caller waits until its
// state, or a later one of the same incident, is durable. One write per
// partition is out at a time, so an incident's records reach the
// changelog in the order its states were queued.
type incidentWriter struct {
	cl partstate.Changelog
	p  int32

	mu       sync.Mutex
	cond     *sync.Cond
	next     *incidentBatch
	flushing bool
}

type incidentBatch struct {
	order []string          // incident ids, first queued first
	vals  map[string][]byte // the latest state queued of each
	done  bool
	err   error
}

func newIncidentWriter(cl partstate.Changelog, p int32) *incidentWriter {
	w := &incidentWriter{cl: cl, p: p}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *incidentWriter) queue(id string, b []byte) func() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	bt := w.next
	if bt == nil {
		bt = &incidentBatch{vals: map[string][]byte{}}
		w.next = bt
	}
	if _, ok := bt.vals[id]; !ok {
		bt.order = append(bt.order, id)
	}
	bt.vals[id] = b
	return func() error { return w.wait(bt, id) }
}

func (w *incidentWriter) wait(bt *incidentBatch, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !bt.done {
		if !w.flushing && w.next == bt {
			w.flush(bt)
			continue
		}
		w.cond.Wait()
	}
	if bt.err != nil {
		return fmt.Errorf("save incident %s: %w", id, bt.err)
	}
	return nil
}

// flush writes bt as the leader; the caller holds mu, which is released
// while the write is out so the next batch can gather.
func (w *incidentWriter) flush(bt *incidentBatch) {
	w.next, w.flushing = nil, true
	w.mu.Unlock()
	recs := make([]partstate.Record, len(bt.order))
	for i, id := range bt.order {
		recs[i] = partstate.Record{Key: IncidentPrefix + id, Value: bt.vals[id]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), changelogWriteTimeout)
	err := w.cl.Append(ctx, w.p, recs...)
	cancel()
	w.mu.Lock()
	w.flushing = false
	bt.done, bt.err = true, err
	w.cond.Broadcast()
}

// NewIncidentReader returns a partstate.Part that keeps the incidents of
// the partitions restored into it, and list, which returns them: for
// commands that read the distributed mode's incidents without owning
// anything.
func NewIncidentReader(cl partstate.Changelog) (list func() []Incident, part partstate.Part) {
	n := cl.Partitions()
	s := newPartIncidents(cl, func(agentID string) int32 { return kafka.PartitionFor(agentID, n) })
	return s.list, s
}
