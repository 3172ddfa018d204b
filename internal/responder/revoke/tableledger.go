package revoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// TableLedger is the distributed mode's Ledger: each record is a record of
// the global table (LedgerPrefix + a hash of its Key), so every instance,
// and `responder restore` run anywhere, reads and writes one ledger. A
// restore made by any of them is seen by every instance once it has
// applied the record (the table is followed continuously), which is what
// lifts the suppression of the incident's alerts everywhere.
//
// Restore material is sealed as FileLedger seals it: encrypted with age to
// LedgerOptions.Key, or withheld without a key, so the topic never holds a
// Kong key in plain text. Safe for concurrent use.
type TableLedger struct {
	t      Table
	sealer *FileLedger // only its key: seal and open

	mu   sync.RWMutex
	recs map[Key]diskRecord
	// changes counts the records applied per adapter, so a reader of one
	// adapter's records (the deny-list mirror) skips the passes that
	// other adapters' records would cause.
	changes map[string]uint64
}

var (
	_ Ledger       = (*TableLedger)(nil)
	_ BudgetSource = (*TableLedger)(nil)
)

// NewTableLedger returns the ledger over t; feed it the table's records
// with LedgerPrefix through Apply, in offset order.
func NewTableLedger(t Table, o LedgerOptions) *TableLedger {
	return &TableLedger{t: t, sealer: &FileLedger{key: o.Key}, recs: make(map[Key]diskRecord)}
}

// LedgerKey returns the table key of k's record.
func LedgerKey(k Key) string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return LedgerPrefix + hex.EncodeToString(sum[:16])
}

// Apply takes one record of the table with LedgerPrefix. A record that
// does not decode is skipped (the caller's log says so through the error).
func (l *TableLedger) Apply(key string, value []byte) error {
	if !strings.HasPrefix(key, LedgerPrefix) {
		return nil
	}
	if value == nil {
		return nil // records are never deleted; a tombstone is an operator's doing
	}
	var d diskRecord
	if err := json.Unmarshal(value, &d); err != nil {
		return fmt.Errorf("ledger record %s: %w", key, err)
	}
	if LedgerKey(d.Key) != key {
		return fmt.Errorf("ledger record %s: holds the key of %s", key, LedgerKey(d.Key))
	}
	l.mu.Lock()
	l.recs[d.Key] = d
	if l.changes == nil {
		l.changes = map[string]uint64{}
	}
	l.changes[d.Key.Adapter]++
	l.mu.Unlock()
	return nil
}

// Changes returns how many records of adapter were applied so far: when
// it has not moved, neither have the adapter's records.
func (l *TableLedger) Changes(adapter string) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.changes[adapter]
}

// Get implements Ledger from what this process has applied.
func (l *TableLedger) Get(_ context.Context, k Key) (Record, bool, error) {
	l.mu.RLock()
	d, ok := l.recs[k]
	l.mu.RUnlock()
	if !ok {
		return Record{}, false, nil
	}
	r, err := l.sealer.open(d)
	return r, true, err
}

// Put implements Ledger: the record is durable in the topic and applied
// here when Put returns.
func (l *TableLedger) Put(ctx context.Context, r Record) error {
	d, err := l.sealer.seal(r)
	if err != nil {
		return err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode ledger record: %w", err)
	}
	if _, err := l.t.Put(ctx, LedgerKey(r.Key), b); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// AutomaticSince implements BudgetSource (the distributed mode counts its
// budget with Claims; this serves diagnostics and tests).
func (l *TableLedger) AutomaticSince(_ context.Context, since time.Time) ([]time.Time, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []time.Time
	for _, d := range l.recs {
		if r := d.Record; r.spentBudget() && !r.StartedAt.Before(since) {
			out = append(out, r.StartedAt)
		}
	}
	return out, nil
}

// Records returns every record, sealed material left out (Saved nil), for
// listing and for the deny-list served over HTTP.
func (l *TableLedger) Records() []Record {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]Record, 0, len(l.recs))
	for _, d := range l.recs {
		r := d.Record
		r.Saved, r.Withheld = nil, d.SavedWithheld
		out = append(out, r)
	}
	return out
}
