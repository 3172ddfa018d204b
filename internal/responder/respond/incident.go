package respond

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/platform/journal"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// maxIncidentAnomalies caps the anomalies an incident keeps for rendering
// and for the false-positive button; later ones are counted, not kept.
const maxIncidentAnomalies = 50

// incidentRetention is how long a closed incident is kept, so a button on an
// old alert still finds what it acts on.
const incidentRetention = 14 * 24 * time.Hour

// Incident is one agent's run of anomalies: the anomalies of an agent that
// arrive within the incident window of each other. It has one Slack thread
// per channel.
type Incident struct {
	ID      string `json:"id"`
	AgentID string `json:"agent_id"`
	// OpenedMs and LastMs are the responder's clock at the first and the
	// latest anomaly.
	OpenedMs int64 `json:"opened_ms"`
	LastMs   int64 `json:"last_ms"`
	// Count is every anomaly that joined, Anomalies the first ones.
	Count     int               `json:"count"`
	Anomalies []anomaly.Anomaly `json:"anomalies"`
	// Roots maps a channel to the outbox key of the incident's top-level
	// alert there; RootMs to when that key was enqueued.
	Roots  map[string]string `json:"roots,omitempty"`
	RootMs map[string]int64  `json:"root_ms,omitempty"`
	// Snapshots are the evidence bundle ids taken for the incident.
	Snapshots []string `json:"snapshots,omitempty"`
	// Checkpoint is the reference of the latest signed checkpoint that
	// covers the incident's snapshots (evidence.Checkpoint.Ref).
	Checkpoint string `json:"checkpoint,omitempty"`
	// Revoked lists the "adapter/credential" revoked in this incident and
	// not restored: alerts for the agent are then suppressed.
	Revoked []string `json:"revoked,omitempty"`

	// What the incident's card and thread show (card.go).
	//
	// Severity is the highest severity of the anomalies that joined.
	Severity string `json:"severity,omitempty"`
	// Classes are the attack classes seen, in order of first appearance.
	Classes []ClassSeen `json:"classes,omitempty"`
	// Stats count every anomaly that joined, kept or not.
	Stats IncidentStats `json:"stats,omitzero"`
	// Risk is the agent's risk over the anomalies that joined.
	Risk slackui.RiskTrend `json:"risk,omitzero"`
	// Actions are the actions taken on the incident (at most
	// maxIncidentActions, the latest).
	Actions []IncidentAction `json:"actions,omitempty"`
	// Announced maps a channel to the highest severity announced at its
	// top level (the card's first post, then each escalation).
	Announced map[string]string `json:"announced,omitempty"`
	// Carded maps a channel to the severity its card showed when it was
	// first posted, with the notify step's mention: an escalation queued
	// while the card waited is then already told.
	Carded map[string]string `json:"carded,omitempty"`
	// Digested maps a channel to what its thread's last summary covered.
	Digested map[string]DigestMark `json:"digested,omitempty"`
	// Summarising maps a channel to the summary being posted (its outbox
	// key) and what it covers, written before the post: a run after a
	// crash that finds the summary in Slack marks what it covered, not
	// what has joined since.
	Summarising map[string]DigestPlan `json:"summarising,omitempty"`
}

// Anomaly returns the incident's anomaly with id, if kept.
func (in *Incident) Anomaly(id string) (anomaly.Anomaly, bool) {
	for _, a := range in.Anomalies {
		if a.ID == id {
			return a, true
		}
	}
	return anomaly.Anomaly{}, false
}

// incidents keeps the open and recent incidents in a JSON-lines file (a
// journal.Journal): each change appends the changed incident's whole state
// (the last line of an id wins) and syncs it, so a change costs one small
// write however many incidents there are. The file is rewritten without
// superseded lines and old incidents when those dominate. A last line torn
// by a crash is cut off (the change it held was never acknowledged).
type incidents struct {
	mu      sync.Mutex
	path    string
	j       *journal.Journal     // nil in memory or read-only
	log     *incidentLog         // the distributed mode's changelog, or nil
	byAgent map[string]*Incident // the agent's latest incident
	byID    map[string]*Incident
	// writing holds the ids of incidents whose line is being made durable
	// outside mu (saveLocked), so that changes of other incidents share
	// the fsync; a change of one of them waits (waitFree), which keeps an
	// incident's lines in the file in the order of its changes.
	writing map[string]bool
	// unsaved holds the ids of incidents whose last write failed: their
	// change is in memory only, so a retried join of the same anomaly
	// writes it again rather than take it as done.
	unsaved map[string]bool
	cond    *sync.Cond // on mu: a write ended
}

// waitFree waits, under mu, until no write of the incidents ids is under
// way.
func (s *incidents) waitFree(ids ...string) {
	for slices.ContainsFunc(ids, func(id string) bool { return s.writing[id] }) {
		s.cond.Wait()
	}
}

// compactMinLines is the smallest file that is compacted.
const compactMinLines = 1024

func openIncidents(path string) (*incidents, error) { return loadIncidents(path, false) }

// loadIncidents reads the file; unless readOnly it then compacts it and
// keeps it open for appending, holding its lock (one process at a time:
// the responder's). A read-only load takes no lock, for a reader beside
// the responder.
func loadIncidents(path string, readOnly bool) (*incidents, error) {
	s := &incidents{path: path, byAgent: map[string]*Incident{}, byID: map[string]*Incident{}, writing: map[string]bool{}, unsaved: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	if path == "" {
		return s, nil
	}
	legacy, err := s.loadArray()
	if err != nil {
		return nil, err
	}
	if readOnly {
		if !legacy {
			if err := journal.Read(path, journal.Options{}, s.replay); err != nil {
				return nil, fmt.Errorf("parse incidents %w", err)
			}
		}
		return s, nil
	}
	if legacy {
		// Turn the first format into lines, which the journal then reads.
		var buf []byte
		for _, in := range s.byID {
			b, err := json.Marshal(in)
			if err != nil {
				return nil, fmt.Errorf("encode incident: %w", err)
			}
			buf = append(append(buf, b...), '\n')
		}
		if err := atomicfile.WriteFile(path, buf, 0o600); err != nil {
			return nil, fmt.Errorf("convert incidents to JSON lines: %w", err)
		}
		s.byAgent, s.byID = map[string]*Incident{}, map[string]*Incident{}
	}
	j, err := journal.Open(path, journal.Options{Name: "incidents", StoppedFix: "restart the responder"}, s.replay)
	if err != nil {
		return nil, err
	}
	s.j = j
	if err := s.rewrite(time.Now().UnixMilli()); err != nil {
		j.Close()
		return nil, err
	}
	return s, nil
}

// loadArray reads the file if it holds the first format, one JSON array,
// and says whether it did.
func (s *incidents) loadArray() (bool, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read incidents: %w", err)
	}
	defer f.Close()
	var first [1]byte
	if _, err := io.ReadFull(f, first[:]); err != nil || first[0] != '[' {
		return false, nil // empty, or JSON lines (which the journal reads)
	}
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return false, fmt.Errorf("read incidents: %w", err)
	}
	var all []*Incident
	if err := json.Unmarshal(b, &all); err != nil {
		return false, fmt.Errorf("parse incidents %s: %w", s.path, err)
	}
	for _, in := range all {
		s.index(in)
	}
	return true, nil
}

// replay indexes one line of the file.
func (s *incidents) replay(rec []byte) error {
	var in Incident
	if err := json.Unmarshal(rec, &in); err != nil {
		return err
	}
	s.index(&in)
	return nil
}

// Close releases the file.
func (s *incidents) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j == nil {
		return nil
	}
	return s.j.Close()
}

// lines returns the lines in the file.
func (s *incidents) lines() int {
	if s.j == nil {
		return 0
	}
	return s.j.Lines()
}

func (s *incidents) index(in *Incident) {
	if old, ok := s.byID[in.ID]; ok && s.byAgent[in.AgentID] == old {
		s.byAgent[in.AgentID] = in
	}
	s.byID[in.ID] = in
	if cur, ok := s.byAgent[in.AgentID]; !ok || cur.LastMs <= in.LastMs {
		s.byAgent[in.AgentID] = in
	}
}

// join adds a to the agent's open incident, or opens one when the agent has
// none within window. It returns a copy of the incident and whether it is
// new. Joining an anomaly already in the incident changes nothing.
func (s *incidents) join(a anomaly.Anomaly, now time.Time, window time.Duration) (Incident, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The incident a joins: the agent's latest, a fleet event's, or a new
	// one; none of them may be being written.
	waitIDs := []string{IncidentID(a)}
	if in, ok := s.byAgent[a.AgentID]; ok {
		waitIDs = append(waitIDs, in.ID)
	}
	s.waitFree(waitIDs...)
	if in, ok := s.byAgent[a.AgentID]; ok && !slices.Contains(waitIDs, in.ID) {
		s.waitFree(in.ID) // replaced while we waited
	}
	nowMs := now.UnixMilli()
	in, ok := s.byAgent[a.AgentID]
	if g, shared := s.groupIncident(a); shared {
		in, ok = g, true
	}
	if ok {
		if _, dup := in.Anomaly(a.ID); dup {
			out := in.clone()
			if s.unsaved[in.ID] {
				if err := s.saveLocked(in, nowMs); err != nil {
					return Incident{}, false, err
				}
			}
			return out, false, nil
		}
	}
	created := !ok || (a.Group == "" && nowMs-in.LastMs > window.Milliseconds())
	if created {
		in = &Incident{ID: IncidentID(a), AgentID: a.AgentID, OpenedMs: nowMs}
	}
	in.LastMs = nowMs
	in.Count++
	newClass := in.observe(a)
	if len(in.Anomalies) < maxIncidentAnomalies || newClass {
		in.Anomalies = append(in.Anomalies, a)
		if a.Group != "" {
			sortShares(in.Anomalies)
		}
	}
	s.index(in)
	out := in.clone() // what this change queued (see update)
	if err := s.saveLocked(in, nowMs); err != nil {
		return Incident{}, false, err
	}
	return out, created, nil
}

// groupIncident returns the incident a share of a fleet-wide event belongs
// to, whatever the incident window: the shares of one event make one
// incident however far apart the partitions report them.
func (s *incidents) groupIncident(a anomaly.Anomaly) (*Incident, bool) {
	if a.Group == "" {
		return nil, false
	}
	in, ok := s.byID[IncidentID(a)]
	return in, ok
}

// sortShares orders the shares of fleet-wide events by group, partition and
// id, so that the incident they make reads the same whichever partition
// reported first; other anomalies keep their order of arrival ahead of
// them.
func sortShares(as []anomaly.Anomaly) {
	slices.SortStableFunc(as, func(x, y anomaly.Anomaly) int {
		switch {
		case x.Group == "" && y.Group == "":
			return 0
		case x.Group == "":
			return -1
		case y.Group == "":
			return 1
		}
		return cmp.Or(strings.Compare(x.Group, y.Group), cmp.Compare(x.Partition, y.Partition), strings.Compare(x.ID, y.ID))
	})
}

// update applies fn to the incident id and saves.
func (s *incidents) update(id string, now time.Time, fn func(*Incident)) (Incident, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitFree(id)
	in, ok := s.byID[id]
	if !ok {
		return Incident{}, fmt.Errorf("incident %q: %w", id, errNoIncident)
	}
	fn(in)
	// The copy is what this change queued: with the write grouped,
	// another change may meanwhile alter the incident in memory.
	out := in.clone()
	if err := s.saveLocked(in, now.UnixMilli()); err != nil {
		return Incident{}, err
	}
	return out, nil
}

// get returns a copy of the incident id.
func (s *incidents) get(id string) (Incident, bool) { return s.lookup(id, false) }

// roots returns the outbox keys of the incident's top-level alerts (its
// Roots), without copying the rest of it.
func (s *incidents) roots(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.byID[id]
	if !ok {
		return nil
	}
	return slices.Collect(maps.Values(in.Roots))
}

// latest returns a copy of agentID's latest incident.
func (s *incidents) latest(agentID string) (Incident, bool) { return s.lookup(agentID, true) }

// lookup returns a copy of the incident key names: an agent id in byAgent,
// or an incident id in byID. silence.Store.Get has the same lock, look up,
// copy out shape over its own type.
func (s *incidents) lookup(key string, byAgent bool) (Incident, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byID
	if byAgent {
		m = s.byAgent
	}
	in, ok := m[key]
	if !ok {
		return Incident{}, false
	}
	return in.clone(), true
}

func (s *incidents) list() []Incident {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Incident, 0, len(s.byID))
	for _, in := range s.byID {
		out = append(out, in.clone())
	}
	return out
}

// saveLocked appends in's state and syncs it; it compacts the file when
// superseded lines dominate.
func (s *incidents) saveLocked(in *Incident, nowMs int64) error {
	id := in.ID
	err := s.writeLocked(in, nowMs)
	if err != nil {
		s.unsaved[id] = true
	} else {
		delete(s.unsaved, id)
	}
	return err
}

// writeLocked makes in's state durable: saveLocked without the
// bookkeeping of failed writes.
func (s *incidents) writeLocked(in *Incident, nowMs int64) error {
	if s.log != nil {
		// Queued under s.mu, so the incident's states reach the
		// changelog in the order they were made, and waited for with
		// s.mu released, so that other changes (and readers) go on
		// meanwhile and join the same write. s.mu is held again on
		// return.
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode incident: %w", err)
		}
		wait := s.log.queue(in.ID, in.AgentID, b)
		s.mu.Unlock()
		defer s.mu.Lock()
		return wait()
	}
	if s.j == nil {
		return nil
	}
	if s.lines() >= compactMinLines && s.lines() >= 4*len(s.byID) {
		return s.rewrite(nowMs)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode incident: %w", err)
	}
	// Let go of mu while the line is made durable, so that changes of
	// other incidents join this fsync (the journal's group commit): with
	// mu held across it, every incident change of every anomaly queued
	// behind one fsync each.
	s.writing[in.ID] = true
	s.mu.Unlock()
	err = s.j.Append(b)
	s.mu.Lock()
	delete(s.writing, in.ID)
	s.cond.Broadcast()
	if err != nil {
		return fmt.Errorf("save incident: %w", err)
	}
	return nil
}

// rewrite replaces the file with one line per live incident, dropping those
// past their retention.
func (s *incidents) rewrite(nowMs int64) error {
	var recs [][]byte
	for id, in := range s.byID {
		if nowMs-in.LastMs > incidentRetention.Milliseconds() && len(in.Revoked) == 0 {
			delete(s.byID, id)
			if s.byAgent[in.AgentID] == in {
				delete(s.byAgent, in.AgentID)
			}
			continue
		}
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode incident: %w", err)
		}
		recs = append(recs, b)
	}
	if err := s.j.Compact(recs); err != nil {
		return fmt.Errorf("rewrite incidents: %w", err)
	}
	return nil
}

func (in *Incident) clone() Incident {
	c := *in
	c.Anomalies = append([]anomaly.Anomaly(nil), in.Anomalies...)
	c.Snapshots = append([]string(nil), in.Snapshots...)
	c.Revoked = append([]string(nil), in.Revoked...)
	c.Roots = map[string]string{}
	for k, v := range in.Roots {
		c.Roots[k] = v
	}
	c.RootMs = map[string]int64{}
	for k, v := range in.RootMs {
		c.RootMs[k] = v
	}
	c.Classes = slices.Clone(in.Classes)
	c.Actions = slices.Clone(in.Actions)
	c.Stats = in.Stats.clone()
	c.Announced = maps.Clone(in.Announced)
	c.Carded = maps.Clone(in.Carded)
	c.Summarising = maps.Clone(in.Summarising) // replaced whole, never changed in place
	c.Digested = maps.Clone(in.Digested)       // DigestMarks are replaced whole, never changed in place
	return c
}

// open records an incident under id for a manual run (it joins no other
// incident). Opening an id that exists changes nothing.
func (s *incidents) open(id string, a anomaly.Anomaly, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitFree(id)
	if _, ok := s.byID[id]; ok {
		return nil
	}
	nowMs := now.UnixMilli()
	in := &Incident{ID: id, AgentID: a.AgentID, OpenedMs: nowMs, LastMs: nowMs, Count: 1, Anomalies: []anomaly.Anomaly{a}}
	in.observe(a)
	s.byID[id] = in
	if _, ok := s.byAgent[a.AgentID]; !ok {
		s.byAgent[a.AgentID] = in
	}
	return s.saveLocked(in, nowMs)
}
