// Package global holds the responder's global rules in the distributed
// mode: the silences, the kill switch, the revocation budget's claims and
// the revocation ledger, all kept in the replicated global table (the
// compacted one-partition topic kafka.responder_global_topic, which every
// instance reads to the end at start and then follows). Whatever one
// instance, `responder restore` or `responder kill-switch` writes there is
// applied by every instance within the table's follow latency, so a
// silence, the kill switch and a restore hold everywhere, and the budget
// is one budget for all instances. The embedded mode keeps its files and
// does not use this package.
//
// The table applies records through Rules.Apply on one goroutine, in
// offset order; the writers (the silence store, the ledger, the claims,
// the switch) Put to the table and return once their record is applied
// here.
package global

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

// Table is the global table as this package writes it (kstate.Table):
// Put and Delete are durable and applied in this process when they return.
type Table interface {
	Put(ctx context.Context, key string, value []byte) (int64, error)
	PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error)
	Delete(ctx context.Context, key string) (int64, error)
}

// Options configure NewRules.
type Options struct {
	// Budget and Interval are responder.revoke_budget and
	// responder.revoke_interval.
	Budget   int
	Interval time.Duration
	// LedgerKey seals the restore material kept in the ledger records
	// (responder.ledger_key); nil withholds it.
	LedgerKey *age.X25519Identity
	// Silences are the silence store's options (Now, Log, Metrics).
	Silences silence.Options
	// Now is the clock of budget claims; nil means time.Now.
	Now func() time.Time
	// Log receives records that could not be applied; nil discards.
	Log *slog.Logger
	// Metrics, if set, is where the applied-records counter is registered.
	Metrics prometheus.Registerer
	// SweepEvery is how often Run deletes the records nothing reads any
	// more; 0 means DefaultSweepEvery.
	SweepEvery time.Duration
}

// DefaultSweepEvery is how often Run sweeps by default: often enough that
// a burst of revocations leaves the topic within minutes of the budget's
// window allowing it, rarely enough to cost nothing.
const DefaultSweepEvery = 5 * time.Minute

// Rules are the global rules of one process, kept current from the table.
// Safe for concurrent use.
type Rules struct {
	Silences *silence.Store
	Ledger   *revoke.TableLedger
	Claims   *revoke.Claims
	Switch   *revoke.TableSwitch

	log     *slog.Logger
	applied *prometheus.CounterVec
	swept   *prometheus.CounterVec
	every   time.Duration

	// ledgerChanged gets a token (without blocking) whenever a ledger
	// record is applied: the deny-list file's mirror waits on it.
	ledgerChanged chan struct{}

	mu      sync.Mutex
	version uint64 // bumped by every ledger record: the deny-list's cache key
	deny    map[string]denyCache
}

type denyCache struct {
	version uint64
	body    []byte
	etag    string
}

// NewRules returns the rules written through t. Hand Rules.Apply to the
// table (as its apply function, or from the one that dispatches by
// prefix) before it reads the topic.
func NewRules(t Table, o Options) (*Rules, error) {
	claims, err := revoke.NewClaims(t, o.Budget, o.Interval, o.Now)
	if err != nil {
		return nil, err
	}
	r := &Rules{
		Silences: silence.OpenTable(t, o.Silences),
		Ledger:   revoke.NewTableLedger(t, revoke.LedgerOptions{Key: o.LedgerKey}),
		Claims:   claims,
		Switch:   revoke.NewTableSwitch(t),
		log:      o.Log,
		deny:     map[string]denyCache{},

		ledgerChanged: make(chan struct{}, 1),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r.applied = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "global_records_total",
		Help: "Records of the global table (silences, kill switch, budget claims, ledger) applied by this instance, by kind and result (ok, invalid)."},
		[]string{"kind", "result"})
	r.swept = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "global_swept_total",
		Help: "Records of the global table this instance deleted because nothing reads them any more (budget_claim: claims and refunds no verdict depends on), by kind."},
		[]string{"kind"})
	r.swept.WithLabelValues("budget_claim")
	r.every = o.SweepEvery
	if r.every <= 0 {
		r.every = DefaultSweepEvery
	}
	return r, nil
}

// Sweep deletes the records of the global table that nothing reads any
// more and returns how many it deleted. Today that is the budget claims
// no verdict can depend on (revoke.Claims.Sweep); silences and commands
// are swept by their own stores, and the ledger and the evidence chain's
// records are kept (docs/responder.md says why). Every instance may sweep:
// a second tombstone for a key changes nothing.
func (r *Rules) Sweep(ctx context.Context) (int, error) {
	n, err := r.Claims.Sweep(ctx)
	r.swept.WithLabelValues("budget_claim").Add(float64(n))
	if n > 0 {
		r.log.Info("budget claims no verdict depends on deleted from the global table", "deleted", n, "kept", r.Claims.Kept())
	}
	return n, err
}

// SweptCounter returns the swept-records counter of kind (tests).
func (r *Rules) SweptCounter(kind string) prometheus.Counter { return r.swept.WithLabelValues(kind) }

// Run sweeps every Options.SweepEvery until ctx ends, and returns nil
// then. A failed sweep is logged and left to the next.
func (r *Rules) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("sweeping the global table failed; the next sweep tries again", "err", err)
		}
	}
}

// Apply applies one record of the global table and reports whether its
// key is one of the rules' (s/, k/switch, b/, l/); other keys (commands)
// are left to the caller. A record that does not decode is logged and
// counted, and changes nothing.
func (r *Rules) Apply(key string, value []byte) bool {
	var kind string
	var err error
	switch {
	case strings.HasPrefix(key, silence.TablePrefix):
		kind, err = "silence", r.Silences.Apply(key, value)
	case key == revoke.SwitchKey:
		kind = "kill_switch"
		r.Switch.Apply(key, value)
		r.log.Warn("kill switch record applied", "engaged", r.Switch.Engaged(), "by", r.Switch.State().By)
	case strings.HasPrefix(key, revoke.ClaimPrefix):
		kind = "budget_claim"
		r.Claims.Apply(key, value)
	case strings.HasPrefix(key, revoke.LedgerPrefix):
		kind, err = "ledger", r.Ledger.Apply(key, value)
		r.mu.Lock()
		r.version++
		r.mu.Unlock()
		select {
		case r.ledgerChanged <- struct{}{}:
		default:
		}
	default:
		return false
	}
	if err != nil {
		r.applied.WithLabelValues(kind, "invalid").Inc()
		r.log.Error("global table record not applied", "key", key, "err", err)
		return true
	}
	r.applied.WithLabelValues(kind, "ok").Inc()
	return true
}

// Register hands the rules' key prefixes of the global table to m, whose
// Apply the caller gives to kstate.OpenTable.
func (r *Rules) Register(m *kstate.Mux) {
	for _, p := range []string{silence.TablePrefix, revoke.SwitchKey, revoke.ClaimPrefix, revoke.LedgerPrefix} {
		m.Handle(p, func(rec kstate.Record) { r.Apply(rec.Key, rec.Value) })
	}
}

// Denied returns the credential ids the deny-list adapter named adapter
// has on its list according to the ledger: those whose revocation is
// recorded as done in any incident and not restored, sorted by id. A
// pending one is left to the instance making it (its own adapter writes
// its file first): listing it here would have that adapter find it
// listed already, and refund the budget it spent.
func (r *Rules) Denied(adapter string) []revoke.Record {
	byID := map[string]revoke.Record{}
	for _, rec := range r.Ledger.Records() {
		if rec.Adapter != adapter || rec.State != revoke.StateRevoked {
			continue
		}
		if prev, ok := byID[rec.CredentialID]; !ok || rec.StartedAt.Before(prev.StartedAt) {
			byID[rec.CredentialID] = rec
		}
	}
	out := make([]revoke.Record, 0, len(byID))
	for _, rec := range byID {
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b revoke.Record) int { return strings.Compare(a.CredentialID, b.CredentialID) })
	return out
}

// Restored returns the credential ids whose every ledger record of adapter
// is restored: the ids to take off the list.
func (r *Rules) Restored(adapter string) []string {
	active := map[string]bool{}
	for _, rec := range r.Ledger.Records() {
		if rec.Adapter == adapter {
			active[rec.CredentialID] = active[rec.CredentialID] || rec.State != revoke.StateRestored
		}
	}
	var out []string
	for id, a := range active {
		if !a {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// DenylistText returns the deny-list of adapter as served over HTTP (one
// credential id per line, sorted) and its strong ETag (a hash of the
// body), recomputed only after a ledger record was applied.
func (r *Rules) DenylistText(adapter string) (body []byte, etag string) {
	r.mu.Lock()
	v := r.version
	c, ok := r.deny[adapter]
	r.mu.Unlock()
	if ok && c.version == v {
		return c.body, c.etag
	}
	var b bytes.Buffer
	for _, rec := range r.Denied(adapter) {
		if strings.ContainsAny(rec.CredentialID, "\r\n") {
			continue // cannot be one line; the json file format holds it
		}
		b.WriteString(rec.CredentialID)
		b.WriteByte('\n')
	}
	body = b.Bytes()
	etag = ETag(body)
	r.mu.Lock()
	r.deny[adapter] = denyCache{version: v, body: body, etag: etag}
	r.mu.Unlock()
	return body, etag
}

// ETag returns the strong entity tag of body: a quoted hash of it, so the
// same list has the same tag on every instance.
func ETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}
