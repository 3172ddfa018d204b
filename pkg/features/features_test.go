package features

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

func TestSlotAndHourOfWeek(t *testing.T) {
	tests := []struct {
		at        string
		slot, how int
	}{
		{"2026-11-23T00:00:00Z", 0, 0},          // Monday
		{"2026-11-23T13:59:59Z", 13, 13},        // Monday afternoon
		{"2026-11-27T23:30:00Z", 23, 4*24 + 23}, // Friday night
		{"2026-11-28T03:00:00Z", 27, 5*24 + 3},  // Saturday
		{"2026-11-29T23:00:00Z", 47, 6*24 + 23}, // Sunday
		{"1970-01-01T00:00:00Z", 0, 72},         // Thursday
		{"1969-12-31T23:00:00Z", 23, 71},        // before the epoch
	}
	for _, tt := range tests {
		ts, err := time.Parse(time.RFC3339, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(ts.UnixMilli()); got != tt.slot {
			t.Errorf("Slot(%s) = %d, want %d", tt.at, got, tt.slot)
		}
		if got := HourOfWeek(ts.UnixMilli()); got != tt.how {
			t.Errorf("HourOfWeek(%s) = %d, want %d", tt.at, got, tt.how)
		}
	}
}

func TestWindowStart(t *testing.T) {
	c := Config{WindowMs: 60_000}
	for _, tt := range []struct{ t, want int64 }{{0, 0}, {59_999, 0}, {60_000, 60_000}, {-1, -60_000}, {-60_000, -60_000}} {
		if got := c.WindowStart(tt.t); got != tt.want {
			t.Errorf("WindowStart(%d) = %d, want %d", tt.t, got, tt.want)
		}
	}
	if !c.Closable(0, 60_000) || c.Closable(0, 59_999) {
		t.Error("Closable without lateness")
	}
	c.LatenessMs = 5_000
	if c.Closable(0, 64_999) || !c.Closable(0, 65_000) {
		t.Error("Closable with lateness")
	}
}

func TestResourceHash(t *testing.T) {
	h1, ok1 := resourceHash("/customers/{id}/orders", "/customers/42/orders")
	h2, ok2 := resourceHash("/customers/{id}/orders", "/customers/43/orders")
	h3, ok3 := resourceHash("/customers/{id}/orders", "/customers/42/orders")
	if !ok1 || !ok2 || !ok3 || h1 == h2 || h1 != h3 {
		t.Errorf("ids under one template: %x %x %x", h1, h2, h3)
	}
	if _, ok := resourceHash("/health", "/health"); ok {
		t.Error("template without parameter has no resource id")
	}
}

func randomEvents(rng *rand.Rand, n int, start int64) []event.Event {
	routes := []struct{ tmpl, path string }{
		{"/customers/{id}", "/customers/%d"}, {"/orders", "/orders"}, {"/accounts/{id}/balance", "/accounts/%d/balance"},
		{"/legacy/v1/users", "/legacy/v1/users"},
	}
	methods := []string{"GET", "GET", "GET", "POST", "DELETE"}
	statuses := []uint16{200, 200, 200, 201, 404, 401, 403, 500}
	evs := make([]event.Event, n)
	for i := range evs {
		r := routes[rng.IntN(len(routes))]
		path := r.path
		if r.tmpl != r.path {
			path = fmt.Sprintf(r.path, rng.IntN(20))
		}
		evs[i] = event.Event{
			EventID: fmt.Sprintf("ev%05d", i), EventTimeMs: start + rng.Int64N(60_000), AgentID: "a1",
			SourceIP: fmt.Sprintf("10.0.0.%d", rng.IntN(3)), Method: methods[rng.IntN(len(methods))],
			Route: r.tmpl, Path: path, Status: statuses[rng.IntN(len(statuses))],
			RequestBytes: uint64(rng.IntN(1000)), ResponseBytes: uint64(rng.IntN(100000)), RequestID: fmt.Sprintf("req%d", i),
		}
	}
	return evs
}

func info(route string) RouteInfo {
	return RouteInfo{Sensitive: route == "/accounts/{id}/balance", Deprecated: route == "/legacy/v1/users"}
}

func closeAll(evs []event.Event, seen *Seen) Window {
	var a Acc
	a.Reset(0)
	for i := range evs {
		a.Add(&evs[i], int64(i), info(evs[i].Route))
	}
	var w Window
	a.Close(60_000, seen, &w)
	w.MinOffset = 0 // offsets follow arrival order by construction
	return w
}

// TestAccMatchesBruteForce checks every feature against a direct count.
func TestAccMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	evs := randomEvents(rng, 500, 0)
	seen := &Seen{SinceMs: -1}
	seen.Routes = append(seen.Routes, hash32("/orders"))
	seen.IPs = append(seen.IPs, hash32("10.0.0.0"))
	w := closeAll(evs, seen)

	var want Vector
	routes, ips, ids := map[string]bool{}, map[string]bool{}, map[string]map[string]bool{}
	calls, ok := map[string]int{}, map[string]int{}
	for _, e := range evs {
		want[Calls]++
		routes[e.Route] = true
		ips[e.SourceIP] = true
		if info(e.Route).Sensitive {
			want[SensitiveCalls]++
		}
		if info(e.Route).Deprecated {
			want[DeprecatedCalls]++
		}
		if e.Status >= 400 && e.Status < 500 {
			want[Client4xx]++
		}
		if e.Status == 401 || e.Status == 403 {
			want[Denials]++
		}
		if e.Status >= 500 {
			want[Server5xx]++
		}
		calls[e.Route]++
		if e.Status >= 200 && e.Status < 300 {
			ok[e.Route]++
		}
		want[RespBytes] += float64(e.ResponseBytes)
		want[RespBytesMax] = max(want[RespBytesMax], float64(e.ResponseBytes))
		if e.Method != "GET" {
			want[WriteCalls]++
			want[ReqBytes] += float64(e.RequestBytes)
		}
		if e.Route != e.Path {
			if ids[e.Route] == nil {
				ids[e.Route] = map[string]bool{}
			}
			ids[e.Route][e.Path] = true
		}
	}
	want[DistinctRoutes] = float64(len(routes))
	want[NewRoutes] = float64(len(routes) - 1)
	want[DistinctIPs] = float64(len(ips))
	want[NewIPs] = float64(len(ips) - 1)
	for _, m := range ids {
		want[MaxIDsPerRoute] = max(want[MaxIDsPerRoute], float64(len(m)))
	}
	if w.Values != want {
		for i := range NumFeatures {
			if w.Values[i] != want[i] {
				t.Errorf("%s = %v, want %v", i, w.Values[i], want[i])
			}
		}
	}
	for _, r := range w.Routes {
		if r.Calls != calls[r.Route] || r.OK != ok[r.Route] {
			t.Errorf("route %s: %d calls, %d OK; want %d, %d", r.Route, r.Calls, r.OK, calls[r.Route], ok[r.Route])
		}
	}
	if len(w.Routes) != len(calls) {
		t.Errorf("%d routes, want %d", len(w.Routes), len(calls))
	}
	if len(w.SensitiveFirst) != 1 || w.SensitiveFirst[0] != "/accounts/{id}/balance" {
		t.Errorf("SensitiveFirst = %v", w.SensitiveFirst)
	}
	if len(w.DeprecatedRoutes) != 1 || len(w.RequestIDs) != MaxSamples || w.EventIDs[0] != "ev00000" {
		t.Errorf("deprecated %v, samples %v %v", w.DeprecatedRoutes, w.RequestIDs, w.EventIDs)
	}
}

// TestShuffledEventsSameWindow: arrival order inside a window changes
// nothing, evidence included.
func TestShuffledEventsSameWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	evs := randomEvents(rng, 300, 0)
	want := closeAll(evs, &Seen{})
	for trial := range 20 {
		sh := append([]event.Event(nil), evs...)
		rng.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		if got := closeAll(sh, &Seen{}); !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: shuffled window differs:\n got %+v\nwant %+v", trial, got, want)
		}
	}
}

func TestAccReuseDoesNotLeak(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var a Acc
	a.Reset(0)
	for _, e := range randomEvents(rng, 400, 0) {
		a.Add(&e, 0, RouteInfo{})
	}
	a.Reset(60_000)
	one := event.Event{EventID: "x", Route: "/orders", Path: "/orders", Method: "GET", Status: 200, SourceIP: "1.2.3.4"}
	a.Add(&one, 7, RouteInfo{})
	var w Window
	a.Close(60_000, &Seen{}, &w)
	if w.Values[Calls] != 1 || w.Values[DistinctRoutes] != 1 || w.Values[MaxIDsPerRoute] != 0 || w.Values[DistinctIPs] != 1 || w.MinOffset != 7 {
		t.Errorf("reused Acc kept old state: %+v", w.Values)
	}
}

// NewIPNames names the never-seen addresses among the window's first
// MaxIPNames, sorted, and forgets them on Reset.
func TestNewIPNames(t *testing.T) {
	var a Acc
	a.Reset(0)
	for _, ip := range []string{"10.0.0.1", "10.0.0.9", "10.0.0.1", "198.51.100.7", "10.0.0.3", "10.0.0.4", "10.0.0.5"} {
		e := event.Event{Route: "/r", SourceIP: ip}
		a.Add(&e, 0, RouteInfo{})
	}
	var seen Seen
	var old Acc
	old.Reset(0)
	e := event.Event{Route: "/r", SourceIP: "10.0.0.1"}
	old.Add(&e, 0, RouteInfo{})
	seen.Merge(&old)
	var w Window
	a.Close(60_000, &seen, &w)
	want := []string{"10.0.0.3", "10.0.0.9", "198.51.100.7"} // 10.0.0.4 and .5 are past the first four
	if !reflect.DeepEqual(w.NewIPNames, want) || w.Values[NewIPs] != 5 || w.Values[DistinctIPs] != 6 {
		t.Errorf("new IPs %v (%g new, %g distinct), want %v (5 new, 6 distinct)", w.NewIPNames, w.Values[NewIPs], w.Values[DistinctIPs], want)
	}
	a.Reset(60_000)
	a.Close(60_000, &seen, &w)
	if len(w.NewIPNames) != 0 {
		t.Errorf("names survived Reset: %v", w.NewIPNames)
	}
}

func TestSeenMergeCapAndRoundTrip(t *testing.T) {
	var s Seen
	var a Acc
	for i := range MaxSeenRoutes + 10 {
		a.Reset(int64(i) * 60_000)
		e := event.Event{Route: fmt.Sprintf("/r%d", i), SourceIP: fmt.Sprintf("10.1.0.%d", i)}
		a.Add(&e, 0, RouteInfo{})
		s.Merge(&a)
	}
	if len(s.Routes) != MaxSeenRoutes || len(s.IPs) != MaxSeenIPs || s.SinceMs != 0 {
		t.Fatalf("caps: %d routes, %d ips, since %d", len(s.Routes), len(s.IPs), s.SinceMs)
	}
	if s.Knows("/r0") || !s.Knows(fmt.Sprintf("/r%d", MaxSeenRoutes+9)) {
		t.Error("oldest route should be evicted first, newest kept")
	}
	s.SinceMs = 12345
	b := s.AppendBinary(nil)
	var got Seen
	n, err := got.UnmarshalBinary(b)
	if err != nil || n != len(b) || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: n=%d err=%v\n got %+v\nwant %+v", n, err, got, s)
	}
	for i := range b {
		if _, err := new(Seen).UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
}

func FuzzSeenUnmarshal(f *testing.F) {
	s := Seen{SinceMs: 99, Routes: []uint32{1, 2, 3}, IPs: []uint32{4}}
	f.Add(s.AppendBinary(nil))
	f.Add([]byte{1, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Seen
		n, err := s.UnmarshalBinary(b)
		if err != nil {
			return
		}
		again := s.AppendBinary(nil)
		var s2 Seen
		if _, err := s2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(s, s2) || n > len(b) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

func BenchmarkAccAdd(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	evs := randomEvents(rng, 1024, 0)
	var a Acc
	a.Reset(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			a.Reset(0)
		}
		e := &evs[i&1023]
		a.Add(e, int64(i), RouteInfo{})
	}
}
