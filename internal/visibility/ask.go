package visibility

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Defaults of Config.
const (
	DefaultLookback        = 90 * 24 * time.Hour
	DefaultNewDays         = 7
	DefaultDormantDays     = 30
	DefaultUnusedGrantDays = 30
	// MaxSpan is the longest span one question may cover.
	MaxSpan = 400 * 24 * time.Hour
	// MaxSamples caps AccessRequest.Samples.
	MaxSamples = 100
	// clockSkew widens the lookback past now, so that an event stamped a
	// little ahead of this host's clock still counts as seen.
	clockSkew = time.Minute
)

const day = 24 * time.Hour

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Lookback == 0 {
		c.Lookback = DefaultLookback
	}
	if c.NewDays == 0 {
		c.NewDays = DefaultNewDays
	}
	if c.DormantDays == 0 {
		c.DormantDays = DefaultDormantDays
	}
	if c.UnusedGrantDays == 0 {
		c.UnusedGrantDays = DefaultUnusedGrantDays
	}
	return c
}

// Validate reports every problem of c (after WithDefaults) at once. Each
// day count must fit in the lookback: the lifecycle and the unused grants
// are read from it.
func (c Config) Validate() error {
	var errs []error
	if c.Lookback < day || c.Lookback > MaxSpan {
		errs = append(errs, fmt.Errorf("lookback: %v; want 1 to %d days", c.Lookback, int(MaxSpan/day)))
	}
	lookDays := int(c.Lookback / day)
	for _, f := range []struct {
		name string
		v    int
	}{{"new_days", c.NewDays}, {"dormant_days", c.DormantDays}, {"unused_grant_days", c.UnusedGrantDays}} {
		if f.v < 1 || f.v > lookDays {
			errs = append(errs, fmt.Errorf("%s: %d; want 1 to the lookback's %d days", f.name, f.v, lookDays))
		}
	}
	return errors.Join(errs...)
}

// Service answers the visibility questions: every method writes one audit
// record (action audit.ActionAsk, the question in one line) through the
// Recorder before it answers, and refuses the question when that write
// fails. It reads the registry and the route inventory afresh for each
// question, so a reload shows at once. Safe for concurrent use if the
// Source and the Recorder are.
type Service struct {
	src Source
	reg func() *inventory.Registry
	inv func() *inventory.Inventory
	rec Recorder
	cfg Config
	now func() time.Time
	// metrics counts the questions; nil counts nothing.
	metrics *Metrics
}

// New returns a Service. reg and inv give the current registry and route
// inventory (nil, or a nil result, means none); cfg's zero fields take
// the defaults, and an invalid cfg falls back to them entirely (callers
// with a config file validate it first with Config.Validate); now is the
// clock (nil means time.Now).
func New(src Source, reg func() *inventory.Registry, inv func() *inventory.Inventory, rec Recorder, cfg Config, now func() time.Time) *Service {
	cfg = cfg.WithDefaults()
	if cfg.Validate() != nil {
		cfg = Config{}.WithDefaults()
	}
	if now == nil {
		now = time.Now
	}
	return &Service{src: src, reg: reg, inv: inv, rec: rec, cfg: cfg, now: now}
}

// Config returns the configuration in use, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// ErrInvalid is matched (errors.Is) by the error of a question that
// cannot be answered as asked: a bad span, tag, template or limit. The
// HTTP API answers it with 400 and its message.
var ErrInvalid = errors.New("invalid question")

// ErrNotFound is matched by the error of a question about an agent or a
// route that is neither registered nor seen: the HTTP API answers 404.
var ErrNotFound = errors.New("not found")

// ErrNotAudited is matched by the error of a question refused because its
// audit record could not be written.
var ErrNotAudited = errors.New("question not audited")

// questionError carries a user-facing message and the sentinel it
// matches.
type questionError struct {
	kind error
	msg  string
}

func (e *questionError) Error() string        { return e.msg }
func (e *questionError) Is(target error) bool { return target == e.kind }

func invalidf(format string, a ...any) error {
	return &questionError{kind: ErrInvalid, msg: fmt.Sprintf(format, a...)}
}

func notFoundf(format string, a ...any) error {
	return &questionError{kind: ErrNotFound, msg: fmt.Sprintf(format, a...)}
}

// Validate reports why sp cannot be asked about: a zero bound, an end not
// after its start, or a span longer than MaxSpan.
func (sp Span) Validate() error {
	switch {
	case sp.From.IsZero() || sp.To.IsZero():
		return invalidf("time range: give both from and to")
	case !sp.To.After(sp.From):
		return invalidf("time range: to (%s) is not after from (%s); swap them", fmtTime(sp.To), fmtTime(sp.From))
	case sp.To.Sub(sp.From) > MaxSpan:
		return invalidf("time range: %s to %s is longer than %d days; ask about a shorter range", fmtTime(sp.From), fmtTime(sp.To), int(MaxSpan/day))
	}
	return nil
}

// String renders the span for a question: "2026-03-15..2026-03-16" when
// both bounds are midnights, RFC 3339 otherwise.
func (sp Span) String() string {
	return fmtTime(sp.From) + ".." + fmtTime(sp.To)
}

func fmtTime(t time.Time) string {
	t = t.UTC()
	if t.Equal(t.Truncate(day)) {
		return t.Format(time.DateOnly)
	}
	return t.Format("2006-01-02T15:04:05.999Z07:00")
}

// quote renders an asked value on one line: Go quoting escapes control
// characters and newlines.
func quote(s string) string { return strconv.Quote(s) }

// ask writes the audit record of one question before it is answered.
// invalid, when set, is why the question is refused: it is recorded as
// refused and returned. A failed write refuses the question: the auditors
// rely on every question being on the trail.
func (s *Service) ask(ctx context.Context, who audit.Actor, question, agentID string, invalid error) error {
	rec := audit.Record{AtMs: s.now().UnixMilli(), Actor: who, Action: audit.ActionAsk, AgentID: agentID,
		Result: audit.ResultOK, Detail: question}
	if invalid != nil {
		rec.Result = audit.ResultRefused
		rec.Detail = question + ": " + invalid.Error()
	}
	if s.rec == nil {
		return fmt.Errorf("%w: no audit trail is configured, so no question is answered", ErrNotAudited)
	}
	if err := s.rec.Record(ctx, rec); err != nil {
		return fmt.Errorf("%w: the question is refused because its audit record could not be written: %v", ErrNotAudited, err)
	}
	return invalid
}

// view is one question's registry, route inventory and time.
type view struct {
	reg  *inventory.Registry
	inv  *inventory.Inventory
	now  time.Time
	look Span // the lookback, ending now
}

func (s *Service) view() view {
	v := view{now: s.now().UTC()}
	if s.reg != nil {
		v.reg = s.reg()
	}
	if s.inv != nil {
		v.inv = s.inv()
	}
	v.look = Span{From: v.now.Add(-s.cfg.Lookback).Truncate(day), To: endOfDay(v.now.Add(clockSkew))}
	return v
}

// endOfDay is the midnight (UTC) that ends t's day. The spans the service
// makes itself end there rather than at now: no event is from the future,
// so the answer is the same, and a span of whole days is answered from
// the daily summaries alone, without aggregating the current day's events
// of the whole fleet.
func endOfDay(t time.Time) time.Time { return t.UTC().Truncate(day).Add(day) }

// question renders a question name and its parameters on one line;
// empty values are left out.
func question(name string, kv ...string) string {
	var b strings.Builder
	b.WriteString(name)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b.WriteString(" " + kv[i] + "=" + kv[i+1])
	}
	return b.String()
}

func spanArg(sp Span) string {
	if sp.From.IsZero() && sp.To.IsZero() {
		return ""
	}
	return sp.String()
}

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return quote(s)
}
