package attack

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// f is an explanation row: observed, expected, contribution.
func f(name string, obs, exp, contrib float64) anomaly.Feature {
	return anomaly.Feature{Name: name, Observed: obs, Expected: exp, Contribution: contrib, Surprise: 10 * contrib}
}

func behaviour(fs ...anomaly.Feature) anomaly.Anomaly {
	return anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "high", Explanation: fs}
}

func routes(n int) []anomaly.RouteCount {
	out := make([]anomaly.RouteCount, n)
	for i := range out {
		out[i] = anomaly.RouteCount{Route: "/r" + strings.Repeat("x", i), Calls: 1}
	}
	return out
}

// The explanations below are those the detector gave in the labelled
// scenarios (detector eval scenarios, seeds 1 and 2), rounded.
var classifyCases = []struct {
	name string
	a    anomaly.Anomaly
	want Class
}{
	// The two cases that used to fire the exfiltration playbook.
	{"401/403 storm with response_bytes_max at 0.5%", behaviour(
		f("denials_401_403", 34, 0.137, 0.45), f("client_4xx", 34, 0.948, 0.29), f("calls", 34, 1.39, 0.19),
		f("max_ids_per_route", 11, 0.819, 0.05), f("response_bytes_max", 9000, 2600, 0.005)), AuthStorm},
	{"id enumeration with response_bytes_max at 0.1%", behaviour(
		f("max_ids_per_route", 25, 1.03, 0.54), f("calls", 26, 1.99, 0.42), f("response_bytes_max", 14500, 2650, 0.001),
		f("distinct_routes", 2, 1.5, 0.01)), IDEnumeration},
	{"id enumeration with many 404s", behaviour(
		f("calls", 18, 1.43, 0.38), f("max_ids_per_route", 17, 1.23, 0.38), f("client_4xx", 7, 0.397, 0.20),
		f("response_bytes_max", 5360, 3030, 0.01)), IDEnumeration},
	{"bulk exfiltration, bytes the largest reason", behaviour(
		f("response_bytes", 1.1e9, 4.6e4, 0.35), f("response_bytes_max", 8.8e7, 1740, 0.30), f("sensitive_calls", 29, 0.37, 0.2),
		f("calls", 29, 1.31, 0.15)), Exfiltration},
	{"bulk exfiltration drowned by its sensitive calls", behaviour(
		f("sensitive_calls", 30, 0.03, 0.51), f("max_ids_per_route", 30, 0.751, 0.21), f("calls", 30, 1, 0.19),
		f("response_bytes", 1.06e9, 1.94e5, 0.04), f("response_bytes_max", 8.78e7, 7870, 0.04)), Exfiltration},
	{"slow exfiltration: one call a minute, megabytes each", behaviour(
		f("response_bytes", 3.48e6, 4940, 0.39), f("response_bytes_max", 3.48e6, 2100, 0.33), f("sensitive_calls", 1, 0.003, 0.11),
		f("new_routes", 1, 0.05, 0.06)), SlowExfiltration},
	{"slow exfiltration, calls a little up", behaviour(
		f("sensitive_calls", 5, 0.008, 0.40), f("response_bytes", 1.7e7, 6690, 0.25), f("response_bytes_max", 4.99e6, 1560, 0.22),
		f("calls", 5, 1.37, 0.05)), SlowExfiltration},
	{"slow exfiltration seen by the drift baseline", anomaly.Anomaly{Kind: anomaly.Drift, Explanation: []anomaly.Feature{
		f("sensitive_calls", 5, 0.211, 0.34), f("response_bytes", 2.54e7, 3.31e4, 0.23), f("response_bytes_max", 9.33e6, 8810, 0.19),
		f("max_ids_per_route", 5, 0.886, 0.13), f("calls", 25, 1.42, 0.09)}}, SlowExfiltration},
	{"out-of-role reads of a route with bigger answers than the agent's usual", behaviour(
		f("sensitive_calls", 5, 0.052, 0.41), f("response_bytes", 2.95e6, 1.54e4, 0.15), f("response_bytes_max", 1.03e6, 3210, 0.14),
		f("max_ids_per_route", 5, 0.946, 0.11), f("calls", 6, 1.68, 0.09)), OutOfRole},
	{"out-of-role sensitive calls", behaviour(
		f("sensitive_calls", 6, 0.006, 0.71), f("calls", 6, 1.15, 0.12), f("max_ids_per_route", 6, 1.1, 0.09), f("new_routes", 1, 0.05, 0.05),
		anomaly.Feature{Name: "off_hours", Observed: 10, Expected: 660}), OutOfRole},
	{"reconnaissance", behaviour(
		f("new_routes", 16, 0.05, 0.38), f("client_4xx", 16, 0.427, 0.26), f("distinct_routes", 18, 2.03, 0.12),
		f("calls", 19, 2.98, 0.10), f("denials_401_403", 3, 0.019, 0.07)), ReconSprawl},
	{"zombie api", behaviour(
		f("deprecated_calls", 5, 0.007, 0.60), f("denials_401_403", 1, 0.007, 0.10), f("max_ids_per_route", 5, 1.43, 0.08)), ZombieAPI},
	{"zombie api, drift", anomaly.Anomaly{Kind: anomaly.Drift, Explanation: []anomaly.Feature{
		f("deprecated_calls", 4, 0.006, 0.75), f("max_ids_per_route", 4, 0.846, 0.13)}}, ZombieAPI},
	{"new source addresses", behaviour(f("new_source_ips", 1, 0.01, 0.5), f("distinct_source_ips", 2, 1, 0.2)), CredentialReplay},
	{"a burst of calls in a quiet hour", behaviour(f("calls", 40, 3, 0.6), anomaly.Feature{Name: "off_hours", Observed: 3, Expected: 700, Surprise: 5}), OffHours},
	{"a burst of 5xx", behaviour(f("server_5xx", 12, 0.1, 0.7), f("calls", 20, 10, 0.1)), Unclassified},
	{"no explanation", behaviour(), Unclassified},
	{"each signature below its minimum share", behaviour(
		f("max_ids_per_route", 5, 1, 0.15), f("denials_401_403", 3, 0.1, 0.15), f("sensitive_calls", 2, 0.1, 0.15),
		f("response_bytes", 5e4, 2e4, 0.15), f("calls", 9, 3, 0.4)), Unclassified},
	// A feature below its expectation is never the reason, however large
	// its contribution (an explanation from before the detector left them
	// out).
	{"bytes below expectation", behaviour(f("response_bytes", 100, 5e4, 0.6), f("denials_401_403", 20, 0.1, 0.3)), AuthStorm},
	{"unapproved route, one", anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Routes: routes(1)}, OutOfRole},
	{"unapproved routes, five at once", anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Routes: routes(5)}, ReconSprawl},
	{"first sensitive route", anomaly.Anomaly{Kind: anomaly.FirstSensitive, Routes: routes(1)}, OutOfRole},
	{"zombie route", anomaly.Anomaly{Kind: anomaly.ZombieRoute}, ZombieAPI},
	{"new source ip", anomaly.Anomaly{Kind: anomaly.NewSourceIP}, CredentialReplay},
	{"off hours rule", anomaly.Anomaly{Kind: anomaly.OffHours, Explanation: []anomaly.Feature{{Name: "calls_this_hour", Observed: 21, Expected: 4.66}}}, OffHours},
	{"shadow agent", anomaly.Anomaly{Kind: anomaly.ShadowAgent}, ShadowAgent},
	{"agent flood", anomaly.Anomaly{Kind: anomaly.AgentFlood, AgentID: "*flood/p1"}, ShadowAgent},
	{"global event", anomaly.Anomaly{Kind: anomaly.GlobalEvent, AgentID: "*global/server_5xx", Explanation: []anomaly.Feature{f("server_5xx", 50, 1, 1)}}, FleetEvent},
	{"fleet gauge", anomaly.Anomaly{Kind: anomaly.FleetGauge, AgentID: "*fleet/p0/calls"}, FleetEvent},
	{"unknown kind", anomaly.Anomaly{Kind: "something_new"}, Unclassified},
}

func TestClassify(t *testing.T) {
	for _, tc := range classifyCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.a); got != tc.want {
				t.Errorf("Classify = %s; want %s", got, tc.want)
			}
		})
	}
}

// TestClassifyAboveExpectationOnly: the detector may list only the
// features observed above their expectation; the class must not depend on
// the others being there.
func TestClassifyAboveExpectationOnly(t *testing.T) {
	for _, tc := range classifyCases {
		a := tc.a
		a.Explanation = slices.DeleteFunc(slices.Clone(a.Explanation), func(f anomaly.Feature) bool {
			return f.Observed <= f.Expected && f.Name != "off_hours" && f.Name != "calls_this_hour"
		})
		if got := Classify(a); got != tc.want {
			t.Errorf("%s, features below expectation left out: Classify = %s; want %s", tc.name, got, tc.want)
		}
	}
}

// TestClassifyIgnoresOrder: the class depends on the explanation's
// contents, not on the order the detector lists them in.
func TestClassifyIgnoresOrder(t *testing.T) {
	for _, tc := range classifyCases {
		a := tc.a
		a.Explanation = slices.Clone(a.Explanation)
		slices.Reverse(a.Explanation)
		if got := Classify(a); got != tc.want {
			t.Errorf("%s, explanation reversed: Classify = %s; want %s", tc.name, got, tc.want)
		}
	}
}

func TestLead(t *testing.T) {
	var (
		unapproved = anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Routes: routes(1)}
		sensitive  = anomaly.Anomaly{Kind: anomaly.FirstSensitive, Routes: routes(1)}
		offHours   = anomaly.Anomaly{Kind: anomaly.OffHours}
		zombie     = anomaly.Anomaly{Kind: anomaly.ZombieRoute}
		slow       = behaviour(f("response_bytes", 3.48e6, 4940, 0.39), f("response_bytes_max", 3.48e6, 2100, 0.33))
		bulk       = behaviour(f("response_bytes", 1.1e9, 4.6e4, 0.35), f("calls", 29, 1.31, 0.3))
		storm      = behaviour(f("denials_401_403", 34, 0.137, 0.45), f("response_bytes_max", 9000, 2600, 0.005))
		enum       = behaviour(f("max_ids_per_route", 25, 1.03, 0.54), f("response_bytes_max", 14500, 2650, 0.001))
		burst      = behaviour(f("server_5xx", 12, 0.1, 0.7))
	)
	for _, tc := range []struct {
		name string
		as   []anomaly.Anomaly
		want Class
	}{
		{"none", nil, Unclassified},
		{"nothing classified", []anomaly.Anomaly{burst, burst}, Unclassified},
		{"one", []anomaly.Anomaly{storm}, AuthStorm},
		{"slow exfiltration that opened as out-of-role calls at night", []anomaly.Anomaly{unapproved, sensitive, offHours, slow, slow}, SlowExfiltration},
		{"bulk beats slow", []anomaly.Anomaly{slow, bulk, slow}, Exfiltration},
		{"zombie route outside the approved list", []anomaly.Anomaly{unapproved, zombie}, ZombieAPI},
		{"auth storm at night", []anomaly.Anomaly{offHours, storm, storm}, AuthStorm},
		{"enumeration at night", []anomaly.Anomaly{enum, offHours}, IDEnumeration},
		{"out of role beats off hours and the unclassified", []anomaly.Anomaly{burst, offHours, unapproved}, OutOfRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Lead(tc.as); got != tc.want {
				t.Errorf("Lead = %s; want %s", got, tc.want)
			}
			rev := slices.Clone(tc.as)
			slices.Reverse(rev)
			if got := Lead(rev); got != tc.want {
				t.Errorf("Lead of the reversed list = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestRankCoversEveryClass(t *testing.T) {
	seen := map[int]Class{}
	for _, c := range Classes() {
		r := Rank(c)
		if r >= len(Classes()) {
			t.Errorf("%s has no rank", c)
		}
		if o, dup := seen[r]; dup {
			t.Errorf("%s and %s share rank %d", c, o, r)
		}
		seen[r] = c
	}
	if Rank(Unclassified) != len(Classes())-1 {
		t.Errorf("Unclassified ranks %d; want last", Rank(Unclassified))
	}
	if Rank("nope") <= Rank(Unclassified) {
		t.Error("an unknown class ranks before Unclassified")
	}
}

var refIDs = map[string]*regexp.Regexp{
	OWASPAPI:     regexp.MustCompile(`^API([1-9]|10):2023$`),
	OWASPAgentic: regexp.MustCompile(`^ASI(0[1-9]|10)$`),
	MITREATTACK:  regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`),
}

func TestDescribe(t *testing.T) {
	titles := map[string]Class{}
	for _, c := range Classes() {
		in := Describe(c)
		if in.Class != c {
			t.Errorf("Describe(%s).Class = %s", c, in.Class)
		}
		for field, s := range map[string]string{"Title": in.Title, "Meaning": in.Meaning, "CheckFirst": in.CheckFirst} {
			switch {
			case strings.TrimSpace(s) == "":
				t.Errorf("%s: no %s", c, field)
			case strings.ContainsAny(s, "\n\r"):
				t.Errorf("%s: %s is more than one line", c, field)
			case field != "Title" && len(s) > 160:
				t.Errorf("%s: %s is %d bytes; keep it to one short line", c, field, len(s))
			}
		}
		if o, dup := titles[in.Title]; dup {
			t.Errorf("%s and %s share the title %q", c, o, in.Title)
		}
		titles[in.Title] = c
		for _, r := range in.Refs {
			re, ok := refIDs[r.Catalogue]
			switch {
			case !ok:
				t.Errorf("%s: unknown catalogue %q", c, r.Catalogue)
			case !re.MatchString(r.ID):
				t.Errorf("%s: %q is not an id of %s", c, r.ID, r.Catalogue)
			case r.Title == "":
				t.Errorf("%s: %s %s has no title", c, r.Catalogue, r.ID)
			}
		}
		if c != Unclassified && len(in.Refs) == 0 {
			t.Errorf("%s: no reference", c)
		}
	}
	if got := Describe(IDEnumeration).Refs; len(got) == 0 || got[0].ID != "API1:2023" {
		t.Errorf("id enumeration refs %v; want OWASP API1:2023 (BOLA) first", got)
	}
	// Describe hands out copies: changing one leaves the next alone.
	Describe(Exfiltration).Refs[0].ID = "changed"
	if Describe(Exfiltration).Refs[0].ID == "changed" {
		t.Error("Describe shares its Refs with the caller")
	}
	if in := Describe("made_up"); in.Class != "made_up" || in.Title != Describe(Unclassified).Title {
		t.Errorf("Describe of an unknown class = %+v; want Unclassified's text under its own name", in)
	}
}

func TestKnown(t *testing.T) {
	for _, c := range Classes() {
		if !Known(string(c)) {
			t.Errorf("Known(%q) = false", c)
		}
	}
	for _, s := range []string{"", "Exfiltration", "exfil", "bola"} {
		if Known(s) {
			t.Errorf("Known(%q) = true", s)
		}
	}
}

func TestKindClasses(t *testing.T) {
	for _, tc := range classifyCases {
		if c := Classify(tc.a); !slices.Contains(KindClasses(tc.a.Kind), c) {
			t.Errorf("%s: Classify = %s, not among KindClasses(%s) = %v", tc.name, c, tc.a.Kind, KindClasses(tc.a.Kind))
		}
	}
	for _, k := range anomaly.Kinds() {
		if len(KindClasses(k)) == 0 {
			t.Errorf("KindClasses(%s) is empty", k)
		}
	}
	if got := KindClasses(anomaly.GlobalEvent); !slices.Equal(got, []Class{FleetEvent}) {
		t.Errorf("KindClasses(global_event) = %v", got)
	}
}

// TestClassifySustainedExcess: a sustained excess is slow exfiltration,
// whatever its explanation, and the only class its kind can take.
func TestClassifySustainedExcess(t *testing.T) {
	a := anomaly.Anomaly{Kind: anomaly.SustainedExcess, Explanation: []anomaly.Feature{
		{Name: "calls", Observed: 620, Expected: 200, Surprise: 1.1, Contribution: 0.6},
		{Name: "response_bytes", Observed: 8e6, Expected: 2e6, Surprise: 0.7, Contribution: 0.4},
	}}
	if got := Classify(a); got != SlowExfiltration {
		t.Errorf("Classify = %s, want %s", got, SlowExfiltration)
	}
	if got := KindClasses(anomaly.SustainedExcess); len(got) != 1 || got[0] != SlowExfiltration {
		t.Errorf("KindClasses = %v, want [%s]", got, SlowExfiltration)
	}
}

// TestLeadSustainedExcess: a sustained excess names the card only when
// nothing else of the incident has a class.
func TestLeadSustainedExcess(t *testing.T) {
	ex := anomaly.Anomaly{Kind: anomaly.SustainedExcess}
	storm := anomaly.Anomaly{Kind: anomaly.Behaviour, Explanation: []anomaly.Feature{{Name: "denials_401_403", Observed: 40, Expected: 0.1, Contribution: 0.9}}}
	if got := Lead([]anomaly.Anomaly{ex}); got != SlowExfiltration {
		t.Errorf("alone: %s, want %s", got, SlowExfiltration)
	}
	if got := Lead([]anomaly.Anomaly{ex, storm}); got != AuthStorm {
		t.Errorf("with an auth storm window: %s, want %s", got, AuthStorm)
	}
}
