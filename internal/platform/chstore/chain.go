package chstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

// Chain is an evidence.ChainStore in the evidence_chain table (migration
// 0003). Safe for concurrent use; it does not own the Store.
//
// Append reads the head and then inserts: ClickHouse has no transaction
// to make that atomic. Appends through one Chain are serialised by a
// mutex, so goroutines of one process sharing a Chain behave like a
// FileChain. Across processes the chain relies on one writer at a time
// (the responder's evidence writer); an Append that starts after another
// process's Append returned sees the new head and fails with
// evidence.ErrChainMoved, as the interface requires. Two Appends from
// different processes that both read the head before either inserted
// both store their record at the same seq: the chain forks. The table
// keeps both rows (it is a plain MergeTree), Head continues from the one
// appended first, the writer whose post-insert check sees the other row
// gets an error saying the chain forked, and evidence.VerifyChain reports
// the fork for good.
type Chain struct {
	st  *Store
	now func() time.Time

	mu sync.Mutex // serialises Append's read-check-insert
}

var _ evidence.ChainStore = (*Chain)(nil)

// NewChain returns the evidence chain in st's database, which must be
// migrated (OpenMigrated). Use one Chain per process.
func NewChain(st *Store) *Chain { return &Chain{st: st, now: time.Now} }

// chainColumns is the evidence_chain INSERT column list, in the order
// chainRow fills it and Records scans it.
var chainColumns = []string{
	"seq", "bundle_id", "agent_id", "anomaly_id", "incident_id", "path",
	"manifest_sha256", "prev_sha256", "created_ms", "appended_ms",
}

var chainSelectList = identList(chainColumns)

// Head implements evidence.ChainStore: the first appended record of the
// highest seq, or ZeroHash and 0 for an empty chain.
func (c *Chain) Head(ctx context.Context) (string, int64, error) {
	rows, err := c.st.conn.Query(ctx, "SELECT manifest_sha256, seq FROM evidence_chain ORDER BY seq DESC, appended_ms LIMIT 1")
	if err != nil {
		return "", 0, fmt.Errorf("read the evidence chain head in %s: %w", c.st.db, err)
	}
	defer rows.Close()
	hash, seq := evidence.ZeroHash, int64(0)
	for rows.Next() {
		if err := rows.Scan(&hash, &seq); err != nil {
			return "", 0, fmt.Errorf("read the evidence chain head in %s: %w", c.st.db, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", 0, fmt.Errorf("read the evidence chain head in %s: %w", c.st.db, err)
	}
	return hash, seq, nil
}

// Append implements evidence.ChainStore. An invalid record is refused
// before anything is read. A record that does not extend the head is
// refused with an error wrapping evidence.ErrChainMoved and nothing is
// stored. After the insert, Append checks that no other record holds the
// same seq; if one does, the chain forked (see Chain) and the error says
// so, with rec stored.
func (c *Chain) Append(ctx context.Context, rec evidence.Record) error {
	if err := validRecord(rec); err != nil {
		return fmt.Errorf("append to evidence chain: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	head, seq, err := c.Head(ctx)
	if err != nil {
		return fmt.Errorf("append bundle %s: %w", rec.BundleID, err)
	}
	if rec.Seq != seq+1 || rec.PrevSHA256 != head {
		return fmt.Errorf("append bundle %s at seq %d after %s: head is seq %d %s: %w",
			rec.BundleID, rec.Seq, rec.PrevSHA256, seq, head, evidence.ErrChainMoved)
	}
	row := []any{
		rec.Seq, rec.BundleID, rec.AgentID, rec.AnomalyID, rec.IncidentID, rec.Path,
		rec.ManifestSHA256, rec.PrevSHA256, rec.CreatedMs, c.now().UnixMilli(),
	}
	if err := c.st.insertRows(ctx, "evidence_chain", chainColumns, row); err != nil {
		return fmt.Errorf("append bundle %s at seq %d: %w", rec.BundleID, rec.Seq, err)
	}
	return c.checkFork(ctx, rec)
}

// Insert stores rec without checking it against the head: for records a
// sequencer outside ClickHouse has already placed in the chain
// (evidence.SequencedChain), which may reach this table out of order or
// twice. Verification counts identical copies once.
func (c *Chain) Insert(ctx context.Context, rec evidence.Record) error {
	if err := validRecord(rec); err != nil {
		return fmt.Errorf("insert into evidence chain: %w", err)
	}
	row := []any{
		rec.Seq, rec.BundleID, rec.AgentID, rec.AnomalyID, rec.IncidentID, rec.Path,
		rec.ManifestSHA256, rec.PrevSHA256, rec.CreatedMs, c.now().UnixMilli(),
	}
	if err := c.st.insertRows(ctx, "evidence_chain", chainColumns, row); err != nil {
		return fmt.Errorf("insert bundle %s at seq %d: %w", rec.BundleID, rec.Seq, err)
	}
	return nil
}

// checkFork reports an error when a record other than rec (by manifest
// hash) holds rec's seq: another process appended at the same time.
func (c *Chain) checkFork(ctx context.Context, rec evidence.Record) error {
	rows, err := c.st.conn.Query(ctx,
		"SELECT DISTINCT bundle_id FROM evidence_chain WHERE seq = ? AND manifest_sha256 != ? LIMIT 10", rec.Seq, rec.ManifestSHA256)
	if err != nil {
		return fmt.Errorf("appended bundle %s at seq %d, but checking for a concurrent append failed: %w", rec.BundleID, rec.Seq, err)
	}
	defer rows.Close()
	var others []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("appended bundle %s at seq %d, but checking for a concurrent append failed: %w", rec.BundleID, rec.Seq, err)
		}
		others = append(others, id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("appended bundle %s at seq %d, but checking for a concurrent append failed: %w", rec.BundleID, rec.Seq, err)
	}
	if len(others) > 0 {
		return fmt.Errorf("evidence chain in %s forked at seq %d: bundle %s and %v were appended by two writers at once; "+
			"run one evidence writer per chain, and `responder verify` to list the damage", c.st.db, rec.Seq, rec.BundleID, others)
	}
	return nil
}

// Records implements evidence.ChainStore: every stored row, in seq order
// and, within a seq, in the order appended, so copies of a record and the
// branches of a fork are all yielded. It streams the rows. A row that is
// not a valid record (edited in the table) stops it with an error naming
// the row, as a damaged line stops evidence.FileChain.
func (c *Chain) Records(ctx context.Context, fn func(evidence.Record) error) error {
	// Cancelling stops the server when fn gives up early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := c.st.conn.Query(ctx, "SELECT "+chainSelectList+" FROM evidence_chain ORDER BY seq, appended_ms")
	if err != nil {
		return fmt.Errorf("read the evidence chain in %s: %w", c.st.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r        evidence.Record
			appended int64
		)
		if err := rows.Scan(&r.Seq, &r.BundleID, &r.AgentID, &r.AnomalyID, &r.IncidentID, &r.Path,
			&r.ManifestSHA256, &r.PrevSHA256, &r.CreatedMs, &appended); err != nil {
			return fmt.Errorf("read the evidence chain in %s: %w", c.st.db, err)
		}
		if err := validRecord(r); err != nil {
			return fmt.Errorf("evidence chain in %s, row at seq %d appended at %d ms: %w; run `responder verify` to see what was changed",
				c.st.db, r.Seq, appended, err)
		}
		if err := fn(r); err != nil {
			cancel()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the evidence chain in %s: %w", c.st.db, err)
	}
	return nil
}

// validRecord applies evidence's own record rules (ParseRecord's), so that
// this store accepts and yields exactly what a FileChain does.
func validRecord(r evidence.Record) error {
	b, err := evidence.MarshalRecord(r)
	if err != nil {
		return err
	}
	_, err = evidence.ParseRecord(b)
	return err
}
