package revoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

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
	// responder can read it, never in a table analysts query. FileLedger
	// stores it encrypted, or not at all (see Withheld).
	Saved []byte `json:"saved,omitempty"`
	// Withheld says the adapter kept restore material that the ledger
	// did not store, for want of a key (FileLedger without
	// LedgerOptions.Key): Saved is nil, but the revocation did get as far
	// as the change.
	Withheld bool `json:"-"`
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
// record, and the last line of a key wins. The file is created with mode
// 0600. Restore material that is more than a change marker (a Kong
// credential's key) is encrypted with age to LedgerOptions.Key, so the
// file never holds it in plain text; without a key it is not stored at all
// (Record.Withheld). Lines written before encryption existed, with the
// material in plain text, are still read. Safe for concurrent use, and across processes on
// systems with flock: the file is a shared journal (journal.OpenShared),
// and each call first reads what others appended (journal.Follow). A last
// line torn by a crash is never read, and is cut off before the next
// append. FileLedger holds no open file or lock between calls, so there is
// nothing to close.
type FileLedger struct {
	j   *journal.Journal
	key *age.X25519Identity

	mu   sync.Mutex
	recs map[Key]diskRecord
}

// diskRecord is a Record as the file holds it.
type diskRecord struct {
	Record
	// SavedAge is Record.Saved encrypted to the ledger key (age's binary
	// format; base64 in JSON).
	SavedAge []byte `json:"saved_age,omitempty"`
	// SavedWithheld is Record.Withheld.
	SavedWithheld bool `json:"saved_withheld,omitempty"`
}

// LedgerOptions configure a FileLedger.
type LedgerOptions struct {
	// Key encrypts restore material to its recipient and decrypts it.
	// nil: restore material is not stored (Record.Withheld), and material
	// that earlier runs stored encrypted cannot be read.
	Key *age.X25519Identity
}

// ErrLedgerKey means restore material in the ledger cannot be decrypted:
// no ledger key is configured, or not the one it was written with.
// Configure the right responder.ledger_key, or restore by hand.
var ErrLedgerKey = errors.New("ledger key")

// ParseLedgerKey parses an age X25519 identity as age-keygen (or
// GenerateLedgerKey) writes it: comment lines and one AGE-SECRET-KEY-1
// line. The error never holds the key.
func ParseLedgerKey(s string) (*age.X25519Identity, error) {
	ids, err := age.ParseIdentities(strings.NewReader(s))
	if err != nil {
		return nil, errors.New("not an age identity file (AGE-SECRET-KEY-1... with optional # comments)")
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("holds %d identities; give exactly one", len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, errors.New("not an X25519 identity (AGE-SECRET-KEY-1...)")
	}
	return id, nil
}

// GenerateLedgerKey writes a new X25519 identity to w in age-keygen's
// format (creation time and public key as comments), so either tool's
// key works.
func GenerateLedgerKey(w io.Writer, now time.Time) (recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("generate ledger key: %w", err)
	}
	r := id.Recipient().String()
	_, err = fmt.Fprintf(w, "# created: %s\n# public key: %s\n%s\n", now.UTC().Format(time.RFC3339), r, id)
	return r, err
}

var (
	_ Ledger       = (*FileLedger)(nil)
	_ BudgetSource = (*FileLedger)(nil)
)

// OpenFileLedger opens (or creates) the ledger file at path and reads it,
// with no key: see OpenFileLedgerWith.
func OpenFileLedger(path string) (*FileLedger, error) {
	return OpenFileLedgerWith(path, LedgerOptions{})
}

// OpenFileLedgerWith opens (or creates) the ledger file at path and reads
// it. Material it cannot decrypt is an error of Get for that key only
// (Sealed counts them at start).
func OpenFileLedgerWith(path string, o LedgerOptions) (*FileLedger, error) {
	j, err := journal.OpenShared(path, journal.Options{})
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &FileLedger{j: j, key: o.Key, recs: make(map[Key]diskRecord)}
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
		var r diskRecord
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

// Get implements Ledger. Restore material is decrypted into Saved; one
// that cannot be is an error wrapping ErrLedgerKey.
func (l *FileLedger) Get(ctx context.Context, k Key) (Record, bool, error) {
	if err := l.catchUp(ctx); err != nil {
		return Record{}, false, err
	}
	l.mu.Lock()
	d, found := l.recs[k]
	l.mu.Unlock()
	if !found {
		return Record{}, false, nil
	}
	r, err := l.open(d)
	return r, true, err
}

// open turns a line of the file back into the Record that was Put.
func (l *FileLedger) open(d diskRecord) (Record, error) {
	r := d.Record
	r.Withheld = d.SavedWithheld
	if len(d.SavedAge) == 0 {
		return r, nil // no material, a change marker, or plain text from before encryption
	}
	what := fmt.Sprintf("restore material of credential %s (%s, incident %s)", r.CredentialID, r.Adapter, r.IncidentID)
	if l.key == nil {
		return Record{}, fmt.Errorf("the ledger holds the %s encrypted, and no responder.ledger_key is set to decrypt it: %w", what, ErrLedgerKey)
	}
	dec, err := age.Decrypt(bytes.NewReader(d.SavedAge), l.key)
	if err == nil {
		r.Saved, err = io.ReadAll(dec)
	}
	if err != nil {
		return Record{}, fmt.Errorf("decrypt the %s: %v; is responder.ledger_key the key it was written with? %w", what, err, ErrLedgerKey)
	}
	return r, nil
}

// seal turns r into the line the file holds: restore material beyond a
// change marker encrypted to the key, or left out without one.
func (l *FileLedger) seal(r Record) (diskRecord, error) {
	d := diskRecord{Record: r}
	d.Withheld = false
	if r.Saved == nil || bytes.Equal(r.Saved, changeMarker) {
		d.SavedWithheld = r.Withheld
		return d, nil
	}
	d.Saved = nil
	if l.key == nil {
		d.SavedWithheld = true
		return d, nil
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, l.key.Recipient())
	if err == nil {
		if _, err = w.Write(r.Saved); err == nil {
			err = w.Close()
		}
	}
	if err != nil {
		return diskRecord{}, fmt.Errorf("encrypt restore material: %w", err)
	}
	d.SavedAge = buf.Bytes()
	return d, nil
}

// Sealed counts the records whose restore material is encrypted, the
// ones of those that this ledger's key cannot decrypt, and the ones that
// hold it in plain text (written before encryption existed), so that the
// responder can warn at start.
func (l *FileLedger) Sealed(ctx context.Context) (encrypted, undecryptable, plain int, err error) {
	if err := l.catchUp(ctx); err != nil {
		return 0, 0, 0, err
	}
	l.mu.Lock()
	recs := make([]diskRecord, 0, len(l.recs))
	for _, d := range l.recs {
		recs = append(recs, d)
	}
	l.mu.Unlock()
	for _, d := range recs {
		switch {
		case len(d.SavedAge) > 0:
			encrypted++
			if _, err := l.open(d); err != nil {
				undecryptable++
			}
		case d.Saved != nil && !bytes.Equal(d.Saved, changeMarker):
			plain++
		}
	}
	return encrypted, undecryptable, plain, nil
}

// ResealFileLedger rewrites the ledger file at path with the restore
// material that lines written before encryption hold in plain text now
// encrypted to key, and returns how many lines it changed. The other lines
// stay as they are, in order. Nothing else may use the file meanwhile (it
// holds the file's lock, and a process following the file would misread
// the replaced one): stop the responder and any responder restore first.
// The file is replaced atomically.
func ResealFileLedger(path string, key *age.X25519Identity) (resealed int, err error) {
	if key == nil {
		return 0, errors.New("reseal ledger: no key")
	}
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("reseal ledger: %w", err)
	}
	l := &FileLedger{key: key}
	var lines [][]byte
	j, err := journal.Open(path, journal.Options{Name: "revocation ledger"}, func(line []byte) error {
		var d diskRecord
		if err := json.Unmarshal(line, &d); err != nil {
			return err
		}
		if d.Saved != nil && !bytes.Equal(d.Saved, changeMarker) {
			sealed, err := l.seal(d.Record)
			if err != nil {
				return err
			}
			if line, err = json.Marshal(sealed); err != nil {
				return fmt.Errorf("encode ledger record: %w", err)
			}
			resealed++
		}
		lines = append(lines, bytes.Clone(line))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reseal ledger: %w", err)
	}
	defer func() {
		if cerr := j.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("reseal ledger: %w", cerr)
		}
	}()
	if resealed == 0 {
		return 0, nil
	}
	if err := j.Compact(lines); err != nil {
		return 0, fmt.Errorf("reseal ledger: %w", err)
	}
	return resealed, nil
}

// Put implements Ledger. A damaged ledger refuses the record before
// writing it. The record reaches l.recs as it is read back after the
// append, so it lands after whatever other processes appended before it,
// as in the file.
func (l *FileLedger) Put(ctx context.Context, r Record) error {
	d, err := l.seal(r)
	if err != nil {
		return err
	}
	line, err := json.Marshal(d)
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
	for _, d := range l.recs {
		if r := d.Record; r.spentBudget() && !r.StartedAt.Before(since) {
			out = append(out, r.StartedAt)
		}
	}
	return out, nil
}
