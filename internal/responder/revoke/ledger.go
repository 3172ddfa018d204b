package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/journal"
)

// Key identifies one revocation: an adapter, a credential, an incident.
// The adapter is part of it so a playbook may revoke one credential
// through two adapters (a Kong DELETE and a deny-list line) in one
// incident.
type Key struct {
	Adapter      string `json:"adapter"`
	CredentialID string `json:"credential_id"`
	IncidentID   string `json:"incident_id"`
}

// State is where a revocation stands.
type State string

// States.
const (
	// StatePending: the revocation was started and may or may not have
	// reached the gateway (a crash, or a call that failed). The next
	// Revoke of the key resumes it without spending budget.
	StatePending State = "pending"
	// StateRevoked: the revocation is done (Record.Status says whether
	// this incident made it or found it made).
	StateRevoked State = "revoked"
	// StateRestored: the revocation was undone.
	StateRestored State = "restored"
)

// Record is the ledger's entry for a Key.
type Record struct {
	Key
	AgentID  string `json:"agent_id,omitempty"`
	Consumer string `json:"consumer,omitempty"`
	State    State  `json:"state"`
	// Status is the last revoke's Status once it finished: revoked or
	// already_revoked (Restore leaves the latter alone). It stays when
	// the record is restored.
	Status Status `json:"status,omitempty"`
	// Origin of the revocation (the zero value is Automatic).
	Origin Origin `json:"origin,omitempty"`
	// Saved is what the adapter kept for Restore. For Kong it holds the
	// credential's key, a secret: a ledger must store it where only the
	// responder can read it, never in a table analysts query.
	Saved []byte `json:"saved,omitempty"`
	// StartedAt is when the revocation was started (it spent budget
	// then if automatic); RevokedAt and RestoredAt when they finished.
	StartedAt  time.Time `json:"started_at"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	RestoredAt time.Time `json:"restored_at,omitzero"`
}

// spentBudget reports whether the record holds an automatic revocation
// that counts against the budget.
func (r Record) spentBudget() bool {
	return r.Origin == Automatic && (r.State == StatePending || r.Status == StatusRevoked)
}

// Ledger stores revocation records. Put replaces the record of its Key.
// Implementations are safe for concurrent use; a Put that returned nil is
// durable.
type Ledger interface {
	// Get returns the record of k; found is false if there is none.
	Get(ctx context.Context, k Key) (r Record, found bool, err error)
	// Put stores r under r.Key.
	Put(ctx context.Context, r Record) error
}

// BudgetSource is a Ledger that can list the start times of automatic
// revocations since a time, so a restarted responder seeds its Budget
// (Budget.Seed) and a crash loop cannot reset the blast-radius limit.
type BudgetSource interface {
	AutomaticSince(ctx context.Context, since time.Time) ([]time.Time, error)
}

// FileLedger is a Ledger in a JSON-lines file: each Put appends the whole
// record, and the last line of a key wins. It is meant for tests and the
// embedded demo. The file is created with mode 0600 because records hold
// kept credentials. Safe for concurrent use, and across processes on
// systems with flock: the file is a shared journal (journal.OpenShared),
// and each call first reads what others appended (journal.Follow). A last
// line torn by a crash is never read, and is cut off before the next
// append. FileLedger holds no open file or lock between calls, so there is
// nothing to close.
type FileLedger struct {
	j *journal.Journal

	mu   sync.Mutex
	recs map[Key]Record
}

var (
	_ Ledger       = (*FileLedger)(nil)
	_ BudgetSource = (*FileLedger)(nil)
)

// OpenFileLedger opens (or creates) the ledger file at path and reads it.
func OpenFileLedger(path string) (*FileLedger, error) {
	j, err := journal.OpenShared(path, journal.Options{})
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &FileLedger{j: j, recs: make(map[Key]Record)}
	if err := l.catchUp(context.Background()); err != nil {
		return nil, err
	}
	return l, nil
}

// Path returns the file's path.
func (l *FileLedger) Path() string { return l.j.Path() }

// catchUp reads the records appended since the last call, by any process,
// into l.recs in file order.
func (l *FileLedger) catchUp(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.j.Follow(ctx, func(line []byte) error {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		l.recs[r.Key] = r
		return nil
	})
	if damaged := (*journal.CorruptError)(nil); errors.As(err, &damaged) {
		return fmt.Errorf("read ledger %s at byte %d: %w; the file is damaged, restore it from backup", damaged.Path, damaged.Offset, damaged.Err)
	}
	if err != nil {
		return fmt.Errorf("read ledger: %w", err)
	}
	return nil
}

// Get implements Ledger.
func (l *FileLedger) Get(ctx context.Context, k Key) (Record, bool, error) {
	if err := l.catchUp(ctx); err != nil {
		return Record{}, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, found := l.recs[k]
	return r, found, nil
}

// Put implements Ledger. A damaged ledger refuses the record before
// writing it. The record reaches l.recs as it is read back after the
// append, so it lands after whatever other processes appended before it,
// as in the file.
func (l *FileLedger) Put(ctx context.Context, r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode ledger record: %w", err)
	}
	if err := l.catchUp(ctx); err != nil {
		return err
	}
	if err := l.j.Append(line); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return l.catchUp(ctx)
}

// AutomaticSince implements BudgetSource.
func (l *FileLedger) AutomaticSince(ctx context.Context, since time.Time) ([]time.Time, error) {
	if err := l.catchUp(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for _, r := range l.recs {
		if r.spentBudget() && !r.StartedAt.Before(since) {
			out = append(out, r.StartedAt)
		}
	}
	return out, nil
}
