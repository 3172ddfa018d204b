// Package clientlimit rate-limits the responder's HTTP endpoints (the API
// and Slack's interactivity endpoint) per client, and keeps the refusals
// out of the audit trail's way: a refused request is counted, and the
// audit trail gets one row per client and sampling interval with the
// counts, never one row per request. The log gets the first refusal of a
// client in an interval at once and the count with the row.
//
// A client is what the endpoint can tell apart: a token's name or a Slack
// user id once the request has proved it, else the remote IP address.
// The endpoint decides (Client); an unproven request never shares a bucket
// with a proven one, so a flood of forgeries cannot lock out the
// analysts.
package clientlimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// Defaults of Options.
const (
	DefaultRate           = 5.0
	DefaultBurst          = 20
	DefaultSampleInterval = time.Minute
	// DefaultMaxClients bounds the clients tracked at once. Loopback alone
	// has 2^24 addresses a local process may bind, so the map must be
	// bounded: past the bound, new clients share one bucket and one row.
	DefaultMaxClients = 4096
)

// Overflow is the client name of every client past MaxClients.
const Overflow = "other"

// ActionRefused is the audit action of a sampled refusal row.
const ActionRefused = "requests_refused"

// Reasons of refusal the endpoints report.
const (
	ReasonRateLimited = "rate_limited"
	ReasonNoToken     = "no_token"
	ReasonBadToken    = "bad_token"
	ReasonBadRequest  = "bad_signature"
)

// Client names who sent a request. Kind is "token", "slack" (a Slack user
// id) or "ip"; ID the name, user id or address. A comparable value.
type Client struct {
	Kind string
	ID   string
}

// IP is the client of an unproven request: the remote address's host.
// X-Forwarded-For is not trusted: any local process could set it.
func IP(remoteAddr string) Client {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	return Client{Kind: "ip", ID: host}
}

// String is "kind:id", as the audit rows and logs name the client.
func (c Client) String() string { return c.Kind + ":" + c.ID }

// Appender is where the sampled rows go (*audit.Logger).
type Appender interface {
	Append(ctx context.Context, recs ...audit.Record) error
}

// Options configures New. The zero value of each field is its default.
type Options struct {
	// Endpoint names what is limited ("api", "slack"): the metric label,
	// the audit actor's kind (api or slack) and the log's.
	Endpoint string
	// Rate is the sustained requests per second per client; Burst how many
	// may come at once. Rate < 0 disables the limit (refusals are still
	// sampled).
	Rate  float64
	Burst int
	// SampleInterval is the length of one sampling interval.
	SampleInterval time.Duration
	MaxClients     int
	Audit          Appender
	Log            *slog.Logger
	Metrics        *Metrics
	Now            func() time.Time
}

// Limiter is one endpoint's per-client limiter and refusal sampler. Safe
// for concurrent use.
type Limiter struct {
	o Options

	mu      sync.Mutex
	buckets map[Client]*rate.Limiter
	// tally is the refusals of the current interval, by client.
	tally      map[Client]*tally
	start      time.Time // of the current interval
	lastPruned time.Time
}

type tally struct {
	first, last time.Time
	reasons     map[string]int
}

// New returns a Limiter.
func New(o Options) *Limiter {
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = DefaultSampleInterval
	}
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultMaxClients
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Endpoint == "" {
		o.Endpoint = "api"
	}
	return &Limiter{o: o, buckets: map[Client]*rate.Limiter{}, tally: map[Client]*tally{}}
}

// Admit takes one request of c from its bucket. When the bucket is empty it
// answers false and how long until a request would be admitted (for
// Retry-After); the caller answers 429 and reports the refusal (Refused).
func (l *Limiter) Admit(c Client) (bool, time.Duration) {
	if l.o.Rate < 0 {
		return true, 0
	}
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[c]
	if !ok {
		l.prune(now)
		if len(l.buckets) >= l.o.MaxClients {
			c = Client{Kind: c.Kind, ID: Overflow}
			b = l.buckets[c]
		}
		if b == nil {
			b = rate.NewLimiter(rate.Limit(l.o.Rate), l.o.Burst)
			l.buckets[c] = b
		}
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	// Tokens below 1: the wait for the next whole one.
	need := 1 - b.TokensAt(now)
	wait := time.Duration(math.Ceil(need / l.o.Rate * float64(time.Second)))
	return false, max(wait, time.Second)
}

// prune forgets buckets that are full again (their clients have been idle
// long enough that forgetting them changes nothing), at most once per
// interval. Called with mu held.
func (l *Limiter) prune(now time.Time) {
	if len(l.buckets) < l.o.MaxClients/2 || now.Sub(l.lastPruned) < l.o.SampleInterval {
		return
	}
	l.lastPruned = now
	for c, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.o.Burst) {
			delete(l.buckets, c)
		}
	}
}

// RetryAfter formats d for the Retry-After header: whole seconds, at least 1.
func RetryAfter(d time.Duration) string {
	return fmt.Sprint(max(int64(math.Ceil(d.Seconds())), 1))
}

// Refused counts one refused request of c for reason. The first refusal of
// a client in an interval is logged at once; the rest are in the
// interval's row (Flush).
func (l *Limiter) Refused(ctx context.Context, c Client, reason, path string) {
	l.o.Metrics.refused(l.o.Endpoint, reason)
	now := l.o.Now()
	l.mu.Lock()
	due := l.rollLocked(now)
	t, ok := l.tally[c]
	if _, tracked := l.buckets[c]; !ok && (len(l.tally) >= l.o.MaxClients || (!tracked && len(l.buckets) >= l.o.MaxClients)) {
		// The same clients share the overflow row as share its bucket.
		c = Client{Kind: c.Kind, ID: Overflow}
		t, ok = l.tally[c]
	}
	if !ok {
		t = &tally{first: now, reasons: map[string]int{}}
		l.tally[c] = t
	}
	t.last = now
	t.reasons[reason]++
	firstOfInterval := !ok
	l.mu.Unlock()
	if firstOfInterval {
		l.o.Log.Warn("request refused; further refusals of this client are counted, and logged once at the end of the interval",
			"endpoint", l.o.Endpoint, "client", c.String(), "reason", reason, "path", path, "interval", l.o.SampleInterval)
	}
	l.write(ctx, due)
}

// rollLocked starts a new interval when the current one has ended and
// returns the ended interval's rows. Called with mu held.
func (l *Limiter) rollLocked(now time.Time) []audit.Record {
	if l.start.IsZero() {
		l.start = now
	}
	if now.Sub(l.start) < l.o.SampleInterval {
		return nil
	}
	recs := l.rowsLocked(now)
	l.start = now
	return recs
}

func (l *Limiter) rowsLocked(end time.Time) []audit.Record {
	if len(l.tally) == 0 {
		return nil
	}
	clients := make([]Client, 0, len(l.tally))
	for c := range l.tally {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, func(a, b Client) int { return strings.Compare(a.String(), b.String()) })
	recs := make([]audit.Record, 0, len(clients))
	for _, c := range clients {
		t := l.tally[c]
		recs = append(recs, l.row(c, t, end))
	}
	clear(l.tally)
	return recs
}

func (l *Limiter) row(c Client, t *tally, end time.Time) audit.Record {
	reasons := make([]string, 0, len(t.reasons))
	total := 0
	for r, n := range t.reasons {
		reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
		total += n
	}
	slices.Sort(reasons)
	actor := audit.Actor{Kind: audit.ActorAPI}
	switch {
	case l.o.Endpoint == "slack" && c.Kind == "slack":
		actor = audit.Actor{Kind: audit.ActorSlack, UserID: c.ID}
	case l.o.Endpoint == "slack":
		actor = audit.Actor{Kind: audit.ActorSlack, Name: c.String()}
	case c.Kind == "token":
		actor.TokenName = c.ID
	default:
		actor.Name = c.String()
	}
	return audit.Record{Actor: actor, Action: ActionRefused, Result: audit.ResultRefused, AtMs: end.UnixMilli(),
		Detail: fmt.Sprintf("%d %s requests refused from %s between %s and %s: %s", total, l.o.Endpoint, c,
			t.first.UTC().Format(time.RFC3339), t.last.UTC().Format(time.RFC3339), strings.Join(reasons, ", "))}
}

// write stores the rows and logs each once.
func (l *Limiter) write(ctx context.Context, recs []audit.Record) {
	if len(recs) == 0 {
		return
	}
	for _, r := range recs {
		l.o.Log.Warn("requests refused in the last interval", "endpoint", l.o.Endpoint, "detail", r.Detail)
	}
	l.o.Metrics.rows(l.o.Endpoint, len(recs))
	if l.o.Audit == nil {
		return
	}
	if err := l.o.Audit.Append(context.WithoutCancel(ctx), recs...); err != nil {
		l.o.Log.Error("sampled refusal rows not stored", "endpoint", l.o.Endpoint, "rows", len(recs), "err", err)
	}
}

// Flush writes the rows of an interval that has ended (every row, when
// all is set: at shutdown).
func (l *Limiter) Flush(ctx context.Context, all bool) {
	now := l.o.Now()
	l.mu.Lock()
	var recs []audit.Record
	if all {
		recs = l.rowsLocked(now)
		l.start = now
	} else {
		recs = l.rollLocked(now)
	}
	l.mu.Unlock()
	l.write(ctx, recs)
}

// Run flushes ended intervals until ctx ends, then the current one.
func (l *Limiter) Run(ctx context.Context) error {
	tick := time.NewTicker(min(l.o.SampleInterval/4, 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Flush(context.WithoutCancel(ctx), true)
			return nil
		case <-tick.C:
			l.Flush(ctx, false)
		}
	}
}
