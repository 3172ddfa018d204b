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
	// partMu orders each partition's writes (lockPart).
	partMu []sync.Mutex
	// loading holds, per partition being restored, the incidents read so
	// far (by id).
	loading map[int32]map[string]*Incident
}

// newPartIncidents returns incidents kept in cl, empty until partitions
// are restored into them (they are a partstate.Part).
func newPartIncidents(cl partstate.Changelog, partOf func(string) int32) *incidents {
	return &incidents{byAgent: map[string]*Incident{}, byID: map[string]*Incident{},
		log: &incidentLog{cl: cl, partOf: partOf, partMu: make([]sync.Mutex, cl.Partitions()), loading: map[int32]map[string]*Incident{}}}
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
		if err := s.log.cl.Append(ctx, s.log.partOf(in.AgentID), partstate.Record{Key: IncidentPrefix + id}); err != nil {
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

// write appends an incident's state b to its agent's changelog partition.
func (l *incidentLog) write(id, agentID string, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), changelogWriteTimeout)
	defer cancel()
	if err := l.cl.Append(ctx, l.partOf(agentID), partstate.Record{Key: IncidentPrefix + id, Value: b}); err != nil {
		return fmt.Errorf("save incident %s: %w", id, err)
	}
	return nil
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
