package features

import (
	"slices"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// Config sets the window geometry. Both are in milliseconds of event time.
type Config struct {
	// WindowMs is the tumbling window width; default 60000 (1 minute).
	WindowMs int64
	// LatenessMs is how far behind the partition's newest event time an
	// event may arrive and still be counted in its own window.
	LatenessMs int64
}

// WindowStart returns the start of the window holding event time t.
func (c Config) WindowStart(t int64) int64 {
	s := t - t%c.WindowMs
	if t < 0 && t%c.WindowMs != 0 {
		s -= c.WindowMs
	}
	return s
}

// Closable reports whether the window starting at start can close once
// the newest event time seen is watermark.
func (c Config) Closable(start, watermark int64) bool {
	return start+c.WindowMs+c.LatenessMs <= watermark
}

// RouteInfo is what the route inventory says about a call's route.
type RouteInfo struct {
	Sensitive, Deprecated bool
}

// MaxSamples is how many request ids (and event ids) a window keeps as
// evidence for an anomaly.
const MaxSamples = 5

// Acc accumulates one agent's events for one window. The zero value is
// ready after Reset; an Acc is reused across windows so that steady state
// does not allocate. Not safe for concurrent use.
type Acc struct {
	StartMs int64
	// MinOffset is the lowest events-topic offset folded in, so the caller
	// knows where to resume if the window has to be rebuilt.
	MinOffset int64
	Late      int

	calls, sens, depr, c4xx, den, s5xx, writes int
	respSum, respMax, reqSum                   uint64

	routes  []routeCount
	ids     u64set
	ips     []uint32
	ipNames [MaxIPNames]string // the first distinct addresses, for rules
	// cred and minIP are the smallest credential id and source address
	// of the window's calls: one per window whatever the arrival order.
	cred, minIP string
	samples     [MaxSamples]sample
	nsample     int
}

type routeCount struct {
	hash      uint32
	calls, ok int
	name      string
	info      RouteInfo
}

type sample struct{ requestID, eventID string }

// Reset empties a for the window starting at startMs, keeping capacity.
func (a *Acc) Reset(startMs int64) {
	a.StartMs, a.MinOffset, a.Late = startMs, -1, 0
	a.calls, a.sens, a.depr, a.c4xx, a.den, a.s5xx, a.writes = 0, 0, 0, 0, 0, 0, 0
	a.respSum, a.respMax, a.reqSum = 0, 0, 0
	clear(a.routes) // drop string references
	a.routes = a.routes[:0]
	a.ids.reset()
	a.ips = a.ips[:0]
	a.ipNames = [MaxIPNames]string{}
	a.cred, a.minIP = "", ""
	a.samples = [MaxSamples]sample{}
	a.nsample = 0
}

// Calls returns the number of events added since Reset.
func (a *Acc) Calls() int { return a.calls }

// Add folds one event, read at offset of the events topic, into the
// window. It does not allocate once the Acc's buffers have grown to the
// agent's usual window.
func (a *Acc) Add(ev *event.Event, offset int64, ri RouteInfo) {
	a.calls++
	if a.MinOffset < 0 || offset < a.MinOffset {
		a.MinOffset = offset
	}
	if ri.Sensitive {
		a.sens++
	}
	if ri.Deprecated {
		a.depr++
	}
	switch s := ev.Status; {
	case s >= 500 && s < 600:
		a.s5xx++
	case s >= 400 && s < 500:
		a.c4xx++
		if s == 401 || s == 403 {
			a.den++
		}
	}
	a.respSum += ev.ResponseBytes
	a.respMax = max(a.respMax, ev.ResponseBytes)
	switch ev.Method {
	case "POST", "PUT", "PATCH", "DELETE":
		a.writes++
		// Only writes: reads carry no body, and gateways that count
		// headers in request size would otherwise drown uploads in noise.
		a.reqSum += ev.RequestBytes
	}

	ok := 0
	if ev.Status >= 200 && ev.Status < 300 {
		ok = 1
	}
	rh := hash32(ev.Route)
	found := false
	for i := range a.routes {
		if a.routes[i].hash == rh {
			a.routes[i].calls++
			a.routes[i].ok += ok
			found = true
			break
		}
	}
	if !found {
		a.routes = append(a.routes, routeCount{hash: rh, calls: 1, ok: ok, name: ev.Route, info: ri})
	}
	if idh, ok := resourceHash(ev.Route, ev.Path); ok {
		a.ids.add(uint64(rh)<<32 | uint64(idh))
	}
	if c := ev.CredentialID; c != "" && (a.cred == "" || c < a.cred) {
		a.cred = c
	}
	if ev.SourceIP != "" {
		if a.minIP == "" || ev.SourceIP < a.minIP {
			a.minIP = ev.SourceIP
		}
		ih := hash32(ev.SourceIP)
		if !slices.Contains(a.ips, ih) {
			if len(a.ips) < MaxIPNames {
				a.ipNames[len(a.ips)] = ev.SourceIP
			}
			a.ips = append(a.ips, ih)
		}
	}
	a.keepSample(ev.RequestID, ev.EventID)
}

// keepSample keeps the MaxSamples events with the smallest event ids: the
// same evidence whatever order the window's events arrived in.
func (a *Acc) keepSample(requestID, eventID string) {
	i := a.nsample
	if i == MaxSamples {
		if eventID >= a.samples[MaxSamples-1].eventID {
			return
		}
		i--
	} else {
		a.nsample++
	}
	for i > 0 && a.samples[i-1].eventID > eventID {
		a.samples[i] = a.samples[i-1]
		i--
	}
	a.samples[i] = sample{requestID, eventID}
}

// Window is a closed window of one agent: its feature vector and the
// evidence an analyst needs to read an anomaly.
type Window struct {
	StartMs, EndMs int64
	Values         Vector
	// HourOfWeek is 0..167 from Monday 00:00 UTC; Slot is the seasonal slot.
	HourOfWeek, Slot int
	// SeenAgeMs is how long the agent's seen-set has been collecting when
	// the window started: novelty means little while it is young.
	SeenAgeMs int64
	Late      int
	MinOffset int64
	// TopRoutes are the most called routes, NewRouteNames the routes never
	// called before, SensitiveFirst the sensitive routes called for the
	// first time, DeprecatedRoutes the deprecated ones called.
	TopRoutes        []RouteCalls
	NewRouteNames    []string
	SensitiveFirst   []string
	DeprecatedRoutes []string
	// NewIPNames are source addresses never seen for the agent, among the
	// first MaxIPNames distinct ones of the window, sorted.
	NewIPNames []string
	// CredentialID and SourceIP are the smallest credential id and source
	// address among the window's calls ("" when none carried one): what
	// the shadow-agent rule groups unregistered agents by.
	CredentialID, SourceIP string
	RequestIDs             []string
	EventIDs               []string
	// Routes are every route called in the window with its calls, for the
	// rules; they reference the Acc's memory until the next Reset.
	Routes []RouteCalls
}

// RouteCalls is a route template and its calls in a window.
type RouteCalls struct {
	Route string
	Calls int
	// OK is how many of the calls were answered 2xx: served, not denied
	// or failed. The route rules rank a call that got through above one
	// that was refused.
	OK int
}

// MaxIPNames bounds the addresses a window remembers by name.
const MaxIPNames = 4

// MaxTopRoutes bounds Window.TopRoutes.
const MaxTopRoutes = 5

// Close computes the window's features against the agent's seen-set into w,
// reusing w's slices. It does not change seen: the caller merges with
// Seen.Merge once it has decided whether the window may train.
func (a *Acc) Close(widthMs int64, seen *Seen, w *Window) {
	w.StartMs, w.EndMs = a.StartMs, a.StartMs+widthMs
	w.HourOfWeek, w.Slot = HourOfWeek(a.StartMs), Slot(a.StartMs)
	w.SeenAgeMs = 0
	if seen.SinceMs != 0 && a.StartMs > seen.SinceMs {
		w.SeenAgeMs = a.StartMs - seen.SinceMs
	}
	w.Late, w.MinOffset = a.Late, a.MinOffset
	w.CredentialID, w.SourceIP = a.cred, a.minIP
	w.TopRoutes, w.NewRouteNames = w.TopRoutes[:0], w.NewRouteNames[:0]
	w.SensitiveFirst, w.DeprecatedRoutes = w.SensitiveFirst[:0], w.DeprecatedRoutes[:0]
	w.NewIPNames = w.NewIPNames[:0]
	w.RequestIDs, w.EventIDs, w.Routes = w.RequestIDs[:0], w.EventIDs[:0], w.Routes[:0]

	newRoutes := 0
	for i := range a.routes {
		r := &a.routes[i]
		w.Routes = append(w.Routes, RouteCalls{Route: r.name, Calls: r.calls, OK: r.ok})
		if !seen.hasRoute(r.hash) {
			newRoutes++
			w.NewRouteNames = append(w.NewRouteNames, r.name)
			if r.info.Sensitive {
				w.SensitiveFirst = append(w.SensitiveFirst, r.name)
			}
		}
		if r.info.Deprecated {
			w.DeprecatedRoutes = append(w.DeprecatedRoutes, r.name)
		}
	}
	// Deterministic order: by calls, then name, whatever the arrival order.
	slices.SortFunc(w.Routes, func(x, y RouteCalls) int {
		if x.Calls != y.Calls {
			return y.Calls - x.Calls
		}
		return strings.Compare(x.Route, y.Route)
	})
	w.TopRoutes = append(w.TopRoutes, w.Routes[:min(len(w.Routes), MaxTopRoutes)]...)
	slices.Sort(w.NewRouteNames)
	slices.Sort(w.SensitiveFirst)
	slices.Sort(w.DeprecatedRoutes)

	newIPs := 0
	for i, h := range a.ips {
		if !seen.hasIP(h) {
			newIPs++
			if i < MaxIPNames {
				w.NewIPNames = append(w.NewIPNames, a.ipNames[i])
			}
		}
	}
	slices.Sort(w.NewIPNames)
	for i := 0; i < a.nsample; i++ {
		w.RequestIDs = append(w.RequestIDs, a.samples[i].requestID)
		w.EventIDs = append(w.EventIDs, a.samples[i].eventID)
	}

	v := &w.Values
	v[Calls] = float64(a.calls)
	v[DistinctRoutes] = float64(len(a.routes))
	v[NewRoutes] = float64(newRoutes)
	v[SensitiveCalls] = float64(a.sens)
	v[DeprecatedCalls] = float64(a.depr)
	v[Client4xx] = float64(a.c4xx)
	v[Denials] = float64(a.den)
	v[Server5xx] = float64(a.s5xx)
	v[RespBytes] = float64(a.respSum)
	v[RespBytesMax] = float64(a.respMax)
	v[ReqBytes] = float64(a.reqSum)
	v[WriteCalls] = float64(a.writes)
	v[MaxIDsPerRoute] = float64(a.ids.maxPerHigh())
	v[DistinctIPs] = float64(len(a.ips))
	v[NewIPs] = float64(newIPs)
}

// resourceHash hashes the path segments that stand where the route
// template has a {parameter}: the resource ids. ok is false when the
// template has no parameter or does not line up with the path.
func resourceHash(template, path string) (uint32, bool) {
	if strings.IndexByte(template, '{') < 0 {
		return 0, false
	}
	h := uint32(2166136261)
	found := false
	t, p := template, path
	for len(t) > 0 && len(p) > 0 {
		t, p = strings.TrimPrefix(t, "/"), strings.TrimPrefix(p, "/")
		ti, pi := strings.IndexByte(t, '/'), strings.IndexByte(p, '/')
		ts, ps := t, p
		if ti >= 0 {
			ts, t = t[:ti], t[ti:]
		} else {
			t = ""
		}
		if pi >= 0 {
			ps, p = p[:pi], p[pi:]
		} else {
			p = ""
		}
		if len(ts) > 1 && ts[0] == '{' {
			found = true
			for i := 0; i < len(ps); i++ {
				h ^= uint32(ps[i])
				h *= 16777619
			}
			h ^= '/'
			h *= 16777619
		}
	}
	return h, found
}

// hash32 is FNV-1a over s; it does not allocate.
func hash32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// u64set is an open-addressing set of non-zero uint64 keys that keeps its
// table across reset, so a reused Acc stops allocating.
type u64set struct {
	slots []uint64
	n     int
}

func (s *u64set) reset() {
	if s.n > 0 {
		clear(s.slots)
	}
	s.n = 0
}

func (s *u64set) add(k uint64) {
	if k == 0 {
		k = 1
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	i := mix(k) & mask
	for {
		switch s.slots[i] {
		case 0:
			s.slots[i] = k
			s.n++
			return
		case k:
			return
		}
		i = (i + 1) & mask
	}
}

func (s *u64set) grow() {
	old := s.slots
	s.slots = make([]uint64, max(16, 2*len(old)))
	s.n = 0
	for _, k := range old {
		if k != 0 {
			s.add(k)
		}
	}
}

// maxPerHigh returns the largest number of keys sharing their high 32
// bits: the most distinct resource ids under one route.
func (s *u64set) maxPerHigh() int {
	if s.n == 0 {
		return 0
	}
	// Few routes per window: count per route with a small linear table.
	var hs [16]struct {
		h uint32
		n int
	}
	used, best := 0, 0
	var overflow map[uint32]int
	for _, k := range s.slots {
		if k == 0 {
			continue
		}
		h := uint32(k >> 32)
		done := false
		for i := 0; i < used; i++ {
			if hs[i].h == h {
				hs[i].n++
				best = max(best, hs[i].n)
				done = true
				break
			}
		}
		if done {
			continue
		}
		if used < len(hs) {
			hs[used] = struct {
				h uint32
				n int
			}{h, 1}
			used++
			best = max(best, 1)
			continue
		}
		if overflow == nil {
			overflow = map[uint32]int{}
		}
		overflow[h]++
		best = max(best, overflow[h])
	}
	return best
}

func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	return k
}
