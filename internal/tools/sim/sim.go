// Package sim generates deterministic, realistic API traffic of AI agents as
// raw gateway access-log lines, each paired with its ground truth: the
// canonical event the ingest should produce, or the reason it should reject
// the line. It feeds the one-process demo, `agentwatch simulate`, integration
// tests and detection-quality evaluation.
//
// Everything is driven by a seeded PCG generator and a simulated clock: the
// same Config always yields the same bytes, nothing reads the wall clock and
// nothing touches the network. IP addresses in lines are private or
// documentation ranges and appear only as text.
//
// Traffic follows a per-role diurnal curve (business hours for
// customer_service, finance and hr; a night batch window for batch_reporting;
// nearly flat for it_ops), quieter weekends (UTC is the simulated time zone)
// and Poisson noise. Labeled incidents and, optionally, garbage lines and
// labeled benign changes (role rollouts, holidays, upstream outages) are
// mixed in. EvalScenario puts them together into a detection-quality
// evaluation: clean history, then test days with incidents of every kind.
//
// Features added after the first release (the incident kinds beyond
// IncidentKinds, benign changes) draw from a random stream of their own,
// so a Config that does not use them gives the same bytes as before they
// existed, and one that does changes no other line it need not: added
// incidents and rollouts only add lines, holidays and outages only drop or
// change lines inside their windows (and add retries there). With
// GarbageRate > 0 the garbage decisions shift, though.
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// Line is one generated access-log line with its ground truth.
type Line struct {
	// Raw is the line as a log shipper would publish it, without a newline.
	// The caller owns it.
	Raw []byte
	// Format is the format the line is written in (or imitates, for bad
	// lines); "" for lines of no format at all.
	Format string
	// Good says the ingest must accept the line.
	Good bool
	// Reason is the reject reason pkg/gateway must report for a bad line
	// (one of the Reason* constants), "" for good lines.
	Reason string
	// Garbage names the kind of bad line, finer than Reason (both too-old
	// and future timestamps are timestamp_out_of_window), "" for good lines.
	Garbage GarbageKind
	// Event is the truth for good lines: the canonical event the ingest
	// should produce, except for the fields only the ingest can know
	// (EventID, IngestTimeMs, Topic, Partition, Offset). Zero for bad lines.
	Event event.Event
	// Incident is the id of the incident that produced the line, "" for
	// normal traffic and garbage.
	Incident string
}

// Config says what to simulate. The zero value of each field except Start
// and Duration picks a default.
type Config struct {
	// Seed selects the run; the same Config gives the same lines.
	Seed uint64
	// Agents is how many registered agents to simulate (default 60).
	Agents int
	// Start is the simulated time of the first minute. Its minute is used as
	// is; seconds are kept.
	//
	// pkg/gateway rejects events more than 7 days old or more than 10 minutes
	// in the future relative to the "now" it is given at parse time. Callers
	// that parse with the wall clock (the demo, kcat into a live ingest)
	// must therefore set Start near time.Now(), and keep Start+Duration no
	// later than a few minutes ahead of the wall clock (or pace the output
	// with a Pacer); otherwise good lines are rejected and the too-old and
	// future garbage loses its meaning.
	Start time.Time
	// Duration is how much simulated time to generate; required.
	Duration time.Duration
	// Formats are the access-log formats in use (default: all of
	// KnownFormats). Agents are dealt to them in turn.
	Formats []string
	// GarbageRate is the probability that a line of normal traffic is
	// replaced by a bad line (default 0). Incident lines are never replaced.
	GarbageRate float64
	// GarbageKinds restricts which bad lines appear (default all, in
	// GarbageKinds order). Leave out GarbageTooLarge when the lines go to a
	// Kafka broker with the default 1 MB message limit.
	GarbageKinds []GarbageKind
	// Incidents to inject. Nil means DefaultIncidents(Duration); an empty,
	// non-nil slice means none.
	Incidents []IncidentSpec
	// RateScale multiplies every normal traffic rate (default 1): 1 gives a
	// few thousand events per simulated hour for 60 agents.
	RateScale float64
	// Benign lists labeled benign changes to inject: role rollouts,
	// holidays, upstream outages (default none). BenignEvents returns
	// their labels.
	Benign []BenignSpec
	// History is how long the run stays free of incidents from Start: the
	// baseline an evaluation learns from (default 0). New rejects an
	// incident that starts inside it.
	History time.Duration
}

// KnownFormats are the access-log formats the simulator can write, the same
// names pkg/gateway parses.
var KnownFormats = []string{
	gateway.FormatEnvoy, gateway.FormatKong, gateway.FormatNginxJSON,
	gateway.FormatNginxCombined, gateway.FormatAWS, gateway.FormatCanonical,
}

// Simulator generates lines for one Config. It is not safe for concurrent
// use; run one per goroutine.
type Simulator struct {
	cfg Config
	// render is gateway.Render, or a faster copy of it; see render.go.
	render func(format string, e *event.Event, h gateway.RenderHints) []byte

	traffic *rand.Rand // normal traffic and the original incident kinds'
	junk    *rand.Rand // garbage decisions, so GarbageRate leaves traffic alone
	// extra drives the features added after the first release (benign
	// changes, added incident kinds), so a Config without them draws
	// exactly what it drew before they existed.
	extra *rand.Rand
	// long drives the low-and-slow incidents and the benign long changes,
	// added later still, for the same reason.
	long *rand.Rand

	agents    []*agent // registered first, in id order, then unregistered ones
	registry  Registry
	incidents []*incident
	benign    []*benign
	rolledOut map[string]bool // templates of the run's RoleRollout routes

	minute  int64 // start of the next minute to generate, Unix ms
	end     int64 // Unix ms
	buf     []item
	order   []uint64 // (time offset in the minute, index into buf), sorted
	pos     int
	clock   int64
	garbage int // index of the next garbage kind to use
}

// item is one generated, not yet rendered, line of traffic.
type item struct {
	ev       event.Event
	a        *agent
	incident string
}

// New checks cfg, builds the agent fleet and incident schedule, and returns
// a Simulator positioned at cfg.Start.
func New(cfg Config) (*Simulator, error) {
	if cfg.Agents == 0 {
		cfg.Agents = 60
	}
	if cfg.Formats == nil {
		cfg.Formats = KnownFormats
	}
	if cfg.RateScale == 0 {
		cfg.RateScale = 1
	}
	if cfg.GarbageKinds == nil {
		cfg.GarbageKinds = GarbageKinds
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Incidents == nil {
		cfg.Incidents = DefaultIncidents(cfg.Start, cfg.Duration)
	}
	s := &Simulator{
		cfg:     cfg,
		render:  render,
		traffic: rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		junk:    rand.New(rand.NewPCG(cfg.Seed, 0xd1b54a32d192ed03)),
		extra:   rand.New(rand.NewPCG(cfg.Seed, extraStream)),
		long:    rand.New(rand.NewPCG(cfg.Seed, longStream)),
		minute:  cfg.Start.UnixMilli(),
		end:     cfg.Start.Add(cfg.Duration).UnixMilli(),
	}
	fleet := rand.New(rand.NewPCG(cfg.Seed, 0x2545f4914f6cdd1d))
	end := cfg.Start.Add(cfg.Duration)
	for i := range cfg.Agents {
		s.agents = append(s.agents, newAgent(fleet, i, cfg.Formats, cfg.Start, end))
	}
	slices.SortFunc(s.agents, func(a, b *agent) int { return strings.Compare(a.ID, b.ID) })
	if err := s.resolveBenign(cfg.Benign); err != nil {
		return nil, err
	}
	for _, a := range s.agents {
		s.registry.Agents = append(s.registry.Agents, a.Agent)
	}
	if err := s.schedule(fleet, cfg.Incidents); err != nil {
		return nil, err
	}
	return s, nil
}

// extraStream selects the random stream of Simulator.extra.
const extraStream = 0x5851f42d4c957f2d

func (c Config) validate() error {
	var errs []error
	if c.Agents < 0 {
		errs = append(errs, fmt.Errorf("agents: must be positive, got %d", c.Agents))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration: must be positive, got %s", c.Duration))
	}
	if c.Start.IsZero() {
		errs = append(errs, errors.New("start: must be set; use a time near now when the lines are parsed with the wall clock"))
	}
	if len(c.Formats) == 0 {
		errs = append(errs, errors.New("formats: need at least one format"))
	}
	for _, f := range c.Formats {
		if !slices.Contains(KnownFormats, f) {
			errs = append(errs, fmt.Errorf("formats: unknown format %q; use one of %v", f, KnownFormats))
		}
	}
	if c.GarbageRate < 0 || c.GarbageRate > 1 {
		errs = append(errs, fmt.Errorf("garbage_rate: must be in [0, 1], got %g", c.GarbageRate))
	}
	if c.GarbageRate > 0 && len(c.GarbageKinds) == 0 {
		errs = append(errs, errors.New("garbage_kinds: need at least one kind when garbage_rate > 0"))
	}
	for _, k := range c.GarbageKinds {
		if !slices.Contains(GarbageKinds, k) {
			errs = append(errs, fmt.Errorf("garbage_kinds: unknown kind %q; use one of %v", k, GarbageKinds))
		}
	}
	if c.RateScale < 0 {
		errs = append(errs, fmt.Errorf("rate_scale: must be positive, got %g", c.RateScale))
	}
	if c.History < 0 || (c.Duration > 0 && c.History > c.Duration) {
		errs = append(errs, fmt.Errorf("history: must be in [0, duration], got %s", c.History))
	}
	if c.Duration > 0 {
		errs = append(errs, validateBenign(c.Benign, c.Duration)...)
	}
	return errors.Join(errs...)
}

// Registry returns the registry of agents the simulator generated. The
// caller must not modify the slices in it.
func (s *Simulator) Registry() Registry { return s.registry }

// Clock returns the simulated time the last line returned by Next was
// generated at: its event time for normal lines, and the time of the slot
// it replaced for garbage (whose own timestamp may lie far from it). Parsing
// a line with now = Clock() gives the verdict Line promises.
func (s *Simulator) Clock() time.Time { return time.UnixMilli(s.clock).UTC() }

// Next returns the next line in event-time order (garbage with out-of-window
// timestamps aside), or false when the simulated time is over. Memory stays
// bounded by one simulated minute of traffic however long the run.
func (s *Simulator) Next() (Line, bool) {
	for s.pos >= len(s.buf) {
		if s.minute >= s.end {
			return Line{}, false
		}
		s.fill()
	}
	it := &s.buf[uint32(s.order[s.pos])]
	s.pos++
	s.clock = it.ev.EventTimeMs
	if it.incident == "" && s.cfg.GarbageRate > 0 && s.junk.Float64() < s.cfg.GarbageRate {
		return s.garbageLine(it), true
	}
	return Line{
		Raw:      s.render(it.ev.Format, &it.ev, it.a.ident),
		Format:   it.ev.Format,
		Good:     true,
		Event:    truth(it.ev),
		Incident: it.incident,
	}, true
}

// fill generates the next simulated minute into buf and its event-time
// order into order; ties keep generation order, so output is deterministic.
func (s *Simulator) fill() {
	clear(s.buf)
	s.buf = s.buf[:0]
	s.pos = 0
	from := s.minute
	to := min(from+60_000, s.end)
	s.minute = to
	t := time.UnixMilli(from).UTC()
	hour := float64(t.Hour()) + float64(t.Minute())/60
	weekend := t.Weekday() == time.Saturday || t.Weekday() == time.Sunday
	span := float64(to-from) / 60_000
	var roleRate [8]float64 // indexed by roleIdx; computed once a minute, not per agent
	for i, r := range Roles {
		roleRate[i] = baseRate[r] * diurnal(r, hour, weekend) * s.cfg.RateScale * span
	}
	var fx effects
	if len(s.benign) > 0 {
		s.minuteEffects(&fx, from, to, hour, weekend)
	}
	for _, a := range s.agents {
		if !a.registered {
			continue
		}
		lambda := roleRate[a.roleIdx] * a.activity
		for range poisson(s.traffic, lambda) {
			at := from + s.traffic.Int64N(to-from)
			ev := s.add(a, "")
			s.normalEvent(s.traffic, ev, a, at, a.ops[pick(s.traffic, a.cum)])
			if fx.on {
				s.affect(&fx, ev, a)
			}
		}
	}
	if fx.on {
		s.benignTraffic(&fx, &roleRate, from, to)
	}
	if len(s.benign) > 0 {
		s.longTraffic(&fx, &roleRate, from, to)
	}
	for _, inc := range s.incidents {
		if inc.Kind == LowAndSlow {
			s.lowAndSlowTraffic(inc, &fx, &roleRate, from, to)
			continue
		}
		s.incidentTraffic(inc, from, to)
	}
	// Sort small keys rather than the items: moving whole events made
	// sorting the most expensive part of generation.
	s.order = s.order[:0]
	for i := range s.buf {
		s.order = append(s.order, uint64(s.buf[i].ev.EventTimeMs-from)<<32|uint64(i))
	}
	slices.Sort(s.order)
}

// baseRate is the calls per minute of an average agent of each role at the
// peak of its diurnal curve.
var baseRate = map[Role]float64{
	RoleCustomerService: 3.0,
	RoleFinance:         1.8,
	RoleHR:              1.2,
	RoleITOps:           1.0,
	RoleBatchReporting:  6.0,
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// businessCurve is 1 from about 9:00 to 17:00 with a lunch dip, near 0 at night.
func businessCurve(h float64) float64 {
	day := sigmoid((h-8.5)/0.6) * sigmoid((17.5-h)/0.7)
	lunch := 1 - 0.35*math.Exp(-(h-12.5)*(h-12.5)/0.5)
	return 0.02 + 0.98*day*lunch
}

// diurnal is the fraction of its peak rate a role runs at, at hour h (UTC,
// fractional) of a weekday or weekend day.
func diurnal(r Role, h float64, weekend bool) float64 {
	switch r {
	case RoleBatchReporting:
		// Nightly jobs from 01:00 to 05:00, every day, and a trickle of
		// ad-hoc reports in the day.
		return 0.02 + 0.98*sigmoid((h-1)/0.25)*sigmoid((5-h)/0.25)
	case RoleITOps:
		f := 0.6 + 0.4*businessCurve(h)
		if weekend {
			f *= 0.7
		}
		return f
	default:
		f := businessCurve(h)
		if weekend {
			f *= 0.1
		}
		return f
	}
}

// poisson draws from a Poisson distribution: Knuth's method for small
// means, a rounded normal for large ones (the difference is invisible at
// the rates where it switches).
func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		n := math.Round(lambda + math.Sqrt(lambda)*rng.NormFloat64())
		return int(max(n, 0))
	}
	l := math.Exp(-lambda)
	k := 0
	for p := rng.Float64(); p > l; p *= rng.Float64() {
		k++
	}
	return k
}

// pick returns an index drawn with the weights whose running sums are cum.
func pick(rng *rand.Rand, cum []float64) int {
	x := rng.Float64() * cum[len(cum)-1]
	i, _ := slices.BinarySearch(cum, x)
	return min(i, len(cum)-1)
}

func logNormal(rng *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*rng.NormFloat64())
}

// add appends an item for agent a to buf and returns its event to fill in:
// events are built in place because copying them cost more than making them.
func (s *Simulator) add(a *agent, incident string) *event.Event {
	s.buf = append(s.buf, item{a: a, incident: incident})
	return &s.buf[len(s.buf)-1].ev
}

// normalEvent fills ev with one ordinary call of agent a to op o at Unix ms
// at, drawing from rng.
func (s *Simulator) normalEvent(rng *rand.Rand, ev *event.Event, a *agent, at int64, o *op) {
	s.baseEvent(rng, ev, a, at)
	ev.Method = o.method
	ev.Route = o.template
	ev.Path = fillTemplate(rng, o.template, o.ids)
	if len(o.query) > 0 && rng.IntN(4) != 0 {
		ev.QueryParams = o.query[:1+rng.IntN(len(o.query))]
	}
	ev.Upstream = o.service
	ev.Status = normalStatus(rng, o.method)
	if o.reqMed > 0 {
		ev.RequestBytes = uint64(logNormal(rng, o.reqMed, 0.6)) + 1
	}
	if ev.Status < 300 {
		ev.ResponseBytes = uint64(logNormal(rng, o.respMed, 0.8))
	} else {
		ev.ResponseBytes = uint64(logNormal(rng, 160, 0.3))
	}
	ev.DurationUs = latencyUs(logNormal(rng, o.latMedMs, 0.5))
}

// baseEvent sets what every call of agent a has in common; its request id
// comes from rng.
func (s *Simulator) baseEvent(rng *rand.Rand, ev *event.Event, a *agent, at int64) {
	*ev = event.Event{
		EventTimeMs:    at,
		AgentID:        a.ID,
		IdentitySource: string(a.Carrier),
		CredentialID:   a.eventCred,
		SourceIP:       a.SourceIP,
		UserAgent:      a.UserAgent,
		Gateway:        a.Gateway,
		Format:         a.Format,
		RequestID:      requestID(rng),
	}
}

// latencyUs rounds a latency to whole milliseconds, the coarsest unit any
// supported format logs, so the truth survives every format exactly.
func latencyUs(ms float64) uint64 {
	return uint64(max(math.Round(ms), 1)) * 1000
}

func normalStatus(rng *rand.Rand, method string) uint16 {
	x := rng.IntN(1000)
	switch {
	case x < 15:
		return 404
	case x < 19:
		return 400
	case x < 23:
		return 429
	case x < 26:
		return 500
	case x < 28:
		return 503
	case x < 29:
		return 401
	}
	switch method {
	case "POST":
		return 201
	case "DELETE":
		return 204
	}
	return 200
}

// fillTemplate replaces every {id} in t with a fresh id of the given kind.
func fillTemplate(rng *rand.Rand, t string, kind idKind) string {
	var buf [128]byte
	b := buf[:0]
	for i := 0; i < len(t); i++ {
		if t[i] == '{' {
			j := i
			for j < len(t) && t[j] != '}' {
				j++
			}
			if kind == idUUID {
				b = append(b, uuidString(rng)...)
			} else {
				b = strconv.AppendInt(b, 100000+rng.Int64N(900000), 10)
			}
			i = j
			continue
		}
		b = append(b, t[i])
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

func requestID(rng *rand.Rand) string {
	var b [32]byte
	x, y := rng.Uint64(), rng.Uint64()
	for i := range 16 {
		b[i] = hexDigits[x>>(4*i)&0xf]
		b[16+i] = hexDigits[y>>(4*i)&0xf]
	}
	return string(b[:])
}

// truth returns the event the ingest should produce from ev rendered in its
// format: fields the format's default layout does not carry are dropped,
// and the event time is cut to the format's resolution.
func truth(ev event.Event) event.Event {
	switch ev.Format {
	case "nginx_combined":
		ev.EventTimeMs -= ev.EventTimeMs % 1000
		ev.Upstream = ""
		ev.RequestID = ""
	case "aws_apigw":
		// The access log has the path without its query string, and no
		// request size or upstream.
		ev.QueryParams = nil
		ev.RequestBytes = 0
		ev.Upstream = ""
	}
	return ev
}
