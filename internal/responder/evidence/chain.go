package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/agentwatch/agentwatch/internal/platform/flock"
	"github.com/agentwatch/agentwatch/internal/platform/journal"
)

// ZeroHash is the previous hash of the first bundle of a chain, and the
// head of an empty chain.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ErrChainMoved means Append was given a record that does not extend the
// chain's current head: another writer appended first. Nothing was stored;
// read the head again and retry. Snapshot does this itself.
var ErrChainMoved = errors.New("evidence chain moved: the record does not extend the current head")

// Record is one link of the evidence chain: a bundle and the SHA-256 of its
// manifest, which also names the previous bundle's manifest hash. It is
// what a ChainStore keeps, one per bundle, in Seq order.
type Record struct {
	// Seq is the bundle's position in the chain, 1 for the first.
	Seq       int64  `json:"seq"`
	BundleID  string `json:"bundle_id"`
	AgentID   string `json:"agent_id"`
	AnomalyID string `json:"anomaly_id"`
	// IncidentID is the responder's incident, "" if none was given.
	IncidentID string `json:"incident_id"`
	// Path is where the bundle was written, informative only: verification
	// looks bundles up by BundleID under the root it is given, so a root
	// may be moved or archived whole.
	Path string `json:"path"`
	// ManifestSHA256 is the hash of the bundle's manifest.json: the
	// bundle's hash.
	ManifestSHA256 string `json:"manifest_sha256"`
	// PrevSHA256 is the previous record's ManifestSHA256, ZeroHash for
	// the first.
	PrevSHA256 string `json:"prev_sha256"`
	CreatedMs  int64  `json:"created_ms"`
}

// ChainStore is where the evidence chain's records live: a JSON-lines file
// in embedded mode (FileChain), a ClickHouse table in production. The
// chain has one writer at a time in practice; Append's check makes a
// second one fail safely instead of forking the chain.
type ChainStore interface {
	// Head returns the last record's ManifestSHA256 and Seq, or ZeroHash
	// and 0 for an empty chain.
	Head(ctx context.Context) (hash string, seq int64, err error)
	// Append stores rec durably. A record whose Seq is not the head's
	// plus one, or whose PrevSHA256 is not the head's hash, is refused
	// with an error wrapping ErrChainMoved and nothing is stored. Any
	// other error leaves it unknown whether rec was stored.
	Append(ctx context.Context, rec Record) error
	// Records calls fn for every stored record in Seq order, and stops
	// with fn's error. It reads what is stored (not a cached copy), so
	// that verification sees tampering. A store that may hold a record
	// twice (an insert retried after a timeout) may yield both copies.
	Records(ctx context.Context, fn func(Record) error) error
}

// validate checks what every stored record must satisfy.
func (r *Record) validate() error {
	var errs []error
	if r.Seq < 1 {
		errs = append(errs, fmt.Errorf("seq: must be at least 1, got %d", r.Seq))
	}
	if err := ValidID(r.BundleID); err != nil {
		errs = append(errs, fmt.Errorf("bundle_id: %w", err))
	}
	if !isHash(r.ManifestSHA256) {
		errs = append(errs, fmt.Errorf("manifest_sha256: want 64 lowercase hex digits, got %q", clip(r.ManifestSHA256, 80)))
	}
	if !isHash(r.PrevSHA256) {
		errs = append(errs, fmt.Errorf("prev_sha256: want 64 lowercase hex digits, got %q", clip(r.PrevSHA256, 80)))
	}
	if r.Seq == 1 && r.PrevSHA256 != ZeroHash {
		errs = append(errs, errors.New("prev_sha256: the first record's must be all zeros"))
	}
	return errors.Join(errs...)
}

// ParseRecord decodes one chain record as MarshalRecord writes it: one JSON
// object with exactly the fields of Record, and valid values (seq at least
// 1, a valid bundle id, hashes of 64 lowercase hex digits).
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if err := decodeStrict(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode chain record: %w", err)
	}
	if err := r.validate(); err != nil {
		return Record{}, fmt.Errorf("chain record: %w", err)
	}
	return r, nil
}

// MarshalRecord encodes r as one line of JSON without the newline.
func MarshalRecord(r Record) ([]byte, error) {
	return json.Marshal(r)
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// FileChain is a ChainStore in one JSON-lines file (a journal.Journal),
// for embedded mode and tests. Every Append is one write and an fsync; a
// last line torn by a crash is cut off when the file is opened again. One
// process at a time may write a file: it holds the lock on path+".lock"
// while open. Another process (`responder verify` beside a running
// responder) gets a read-only FileChain instead: Head is the chain as it
// was at open, Records reads the file anew, Append fails. A FileChain is
// safe for concurrent use; the caller owns it and must Close it.
type FileChain struct {
	path string
	j    *journal.Journal // nil when read-only

	mu     sync.Mutex
	head   string
	seq    int64
	closed bool
}

var _ ChainStore = (*FileChain)(nil)

// OpenFileChain opens the chain file at path, creating it (mode 0600) if
// missing, and reads its head. A complete line that is not a valid record
// is an error naming the line: the file was edited, and VerifyChain will
// say more. If another process has the chain open, the FileChain is
// read-only (see FileChain).
func OpenFileChain(path string) (*FileChain, error) {
	c := &FileChain{path: path, head: ZeroHash}
	replay := func(b []byte) error {
		rec, err := ParseRecord(b)
		if err != nil {
			return err
		}
		c.head, c.seq = rec.ManifestSHA256, rec.Seq
		return nil
	}
	j, err := journal.Open(path, journal.Options{Perm: 0o600}, replay)
	if errors.Is(err, flock.ErrLocked) {
		err = journal.Read(path, journal.Options{}, replay)
	}
	if err != nil {
		return nil, chainError("open", err, "; run VerifyChain (responder verify) to see what was changed")
	}
	c.j = j
	return c, nil
}

// Head implements ChainStore.
func (c *FileChain) Head(ctx context.Context) (string, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", 0, errors.New("evidence chain is closed")
	}
	return c.head, c.seq, nil
}

// Append implements ChainStore. A failed write is cut off again, so that
// the error means "not stored"; after a failed fsync the chain is closed,
// as the record may be on disk or not, and the next Open decides.
func (c *FileChain) Append(ctx context.Context, rec Record) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("append to evidence chain: %w", err)
	}
	line, err := MarshalRecord(rec)
	if err != nil {
		return fmt.Errorf("append to evidence chain: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return errors.New("evidence chain is closed")
	case c.j == nil:
		return fmt.Errorf("append to evidence chain %s: another process (the responder) has it open; this one may only read it", c.path)
	}
	if rec.Seq != c.seq+1 || rec.PrevSHA256 != c.head {
		return fmt.Errorf("append bundle %s at seq %d after %s: head is seq %d %s: %w",
			rec.BundleID, rec.Seq, rec.PrevSHA256, c.seq, c.head, ErrChainMoved)
	}
	if err := c.j.Append(line); err != nil {
		c.closed = c.j.Closed()
		return fmt.Errorf("append to evidence chain: %w", err)
	}
	c.head, c.seq = rec.ManifestSHA256, rec.Seq
	return nil
}

// Records implements ChainStore. It reads the file, up to the last record
// this FileChain knows complete (a read-only one: every complete line),
// and calls fn without holding the lock.
func (c *FileChain) Records(ctx context.Context, fn func(Record) error) error {
	c.mu.Lock()
	j, closed := c.j, c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("evidence chain is closed")
	}
	var stop error // fn's or ctx's, returned as it is
	each := func(b []byte) error {
		rec, err := ParseRecord(b)
		if err != nil {
			return err
		}
		if stop = ctx.Err(); stop == nil {
			stop = fn(rec)
		}
		return stop
	}
	var err error
	if j != nil {
		err = j.Records(ctx, each)
	} else {
		err = journal.Read(c.path, journal.Options{}, each)
	}
	switch {
	case stop != nil:
		return stop
	case err != nil:
		return chainError("read", err, "")
	}
	return nil
}

// chainError says what went wrong doing verb to the chain file: a line
// the journal refused is named, with hint after it.
func chainError(verb string, err error, hint string) error {
	if damaged := (*journal.CorruptError)(nil); errors.As(err, &damaged) {
		return fmt.Errorf("evidence chain %s line %d: %w%s", damaged.Path, damaged.Line, damaged.Err, hint)
	}
	return fmt.Errorf("%s evidence chain: %w", verb, err)
}

// Close releases the file and its lock. Calls after Close fail. The
// idempotent-Close shape is the usual one (detstate.FileStore's too); the
// files differ.
func (c *FileChain) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.j == nil {
		return nil
	}
	return c.j.Close()
}

// findRecords returns the records of bundle id.
func findRecords(ctx context.Context, store ChainStore, id string) ([]Record, error) {
	var out []Record
	err := store.Records(ctx, func(r Record) error {
		if r.BundleID == id && (len(out) == 0 || r != out[len(out)-1]) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the evidence chain: %w", err)
	}
	return out, nil
}
