package revoke

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/platform/flock"
	"io"
	"os"
	"sync"
	"time"
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
// systems with flock: each call first reads what others appended.
type FileLedger struct {
	path string

	mu   sync.Mutex
	off  int64
	recs map[Key]Record
}

var (
	_ Ledger       = (*FileLedger)(nil)
	_ BudgetSource = (*FileLedger)(nil)
)

// OpenFileLedger opens (or creates) the ledger file at path and reads it.
func OpenFileLedger(path string) (*FileLedger, error) {
	l := &FileLedger{path: path, recs: make(map[Key]Record)}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	f.Close()
	if err := l.locked(func(*os.File) error { return nil }); err != nil {
		return nil, err
	}
	return l, nil
}

// locked runs fn under both locks, after reading the lines appended since
// the last call. fn gets the file opened for appending.
func (l *FileLedger) locked(fn func(f *os.File) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := flock.Lock(l.path+".lock", true, true)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer unlock()
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open ledger: %w", err)
	}
	defer f.Close()
	if err := l.catchUp(f); err != nil {
		return err
	}
	return fn(f)
}

// catchUp reads complete lines from l.off on. A last line without its
// newline is the remains of a write cut short by a crash: it is skipped
// now and cut off before the next append.
func (l *FileLedger) catchUp(f *os.File) error {
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return fmt.Errorf("read ledger: %w", err)
	}
	rd := bufio.NewReader(f)
	for {
		line, err := rd.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // a partial line stays unread
		}
		if err != nil {
			return fmt.Errorf("read ledger %s: %w", l.path, err)
		}
		n := int64(len(line))
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("read ledger %s at byte %d: %w; the file is damaged, restore it from backup", l.path, l.off, err)
			}
			l.recs[r.Key] = r
		}
		l.off += n
	}
}

// Get implements Ledger.
func (l *FileLedger) Get(_ context.Context, k Key) (Record, bool, error) {
	var r Record
	var found bool
	err := l.locked(func(*os.File) error {
		r, found = l.recs[k]
		return nil
	})
	return r, found, err
}

// Put implements Ledger.
func (l *FileLedger) Put(_ context.Context, r Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode ledger record: %w", err)
	}
	line = append(line, '\n')
	return l.locked(func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		if fi.Size() > l.off {
			// Remains of a cut-short write: drop them so the next line
			// starts at a line boundary.
			if err := f.Truncate(l.off); err != nil {
				return fmt.Errorf("ledger: cut partial line: %w", err)
			}
		}
		if _, err := f.Write(line); err != nil {
			return fmt.Errorf("append to ledger %s: %w", l.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync ledger %s: %w", l.path, err)
		}
		l.off += int64(len(line))
		l.recs[r.Key] = r
		return nil
	})
}

// AutomaticSince implements BudgetSource.
func (l *FileLedger) AutomaticSince(_ context.Context, since time.Time) ([]time.Time, error) {
	var out []time.Time
	err := l.locked(func(*os.File) error {
		for _, r := range l.recs {
			if r.spentBudget() && !r.StartedAt.Before(since) {
				out = append(out, r.StartedAt)
			}
		}
		return nil
	})
	return out, err
}
