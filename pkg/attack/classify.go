package attack

import (
	"math"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// Thresholds of the feature signatures. A contribution is a feature's
// share of the window's total surprise (anomaly.Feature.Contribution).
const (
	// MinShare is the least share of the window's surprise a signature's
	// features must carry together to name the window's class: one fifth.
	// A feature that explains 0.5% of a window is a bystander, not the
	// reason; the reason in every labelled scenario carries 35% or more
	// (docs/evaluation.md).
	MinShare = 0.2
	// minBytesShare and minBytesRatio name an exfiltration whose bytes
	// are not the largest reason because everything else about the window
	// is extreme too (dozens of sensitive calls a minute): response bytes
	// at least 1000 times the usual still name it, if they carry at least
	// 5%. An out-of-role read of a sensitive route whose answers are only
	// bigger than the agent's usual ones (100 to 300 times, in the
	// scenarios) stays out-of-role access.
	minBytesShare = 0.05
	minBytesRatio = 1000
	// maxSlowCallsRatio separates slow from bulk exfiltration: a window
	// whose bytes are the reason but whose calls are under 5 times the
	// usual (or not a reason at all) pulls a lot per call, not a lot of
	// calls.
	maxSlowCallsRatio = 5
	// minReconRoutes is how many distinct unapproved routes one window of
	// an unapproved_route anomaly must name to be reconnaissance rather
	// than one out-of-role call (the detector lists at most 5).
	minReconRoutes = 4
)

// Feature names of the signatures.
var (
	fCalls          = features.Calls.String()
	fNewRoutes      = features.NewRoutes.String()
	fDistinctRoutes = features.DistinctRoutes.String()
	fSensitive      = features.SensitiveCalls.String()
	fDeprecated     = features.DeprecatedCalls.String()
	fDenials        = features.Denials.String()
	fRespBytes      = features.RespBytes.String()
	fRespBytesMax   = features.RespBytesMax.String()
	fMaxIDs         = features.MaxIDsPerRoute.String()
	fDistinctIPs    = features.DistinctIPs.String()
	fNewIPs         = features.NewIPs.String()
	// fOffHours is the behaviour anomaly's hour-of-week term
	// (internal/detector/detect), not a window feature.
	fOffHours = "off_hours"
)

// Classify returns the class of one anomaly. Rule kinds map directly (an
// unapproved_route naming many routes at once is reconnaissance); a
// statistical anomaly (behaviour, drift) is classified by which features
// explain it and by how much (see signature).
func Classify(a anomaly.Anomaly) Class {
	switch a.Kind {
	case anomaly.Behaviour, anomaly.Drift:
		return signature(a)
	case anomaly.ShadowAgent, anomaly.AgentFlood:
		return ShadowAgent
	case anomaly.GlobalEvent, anomaly.FleetGauge:
		return FleetEvent
	case anomaly.UnapprovedRoute:
		if len(a.Routes) >= minReconRoutes {
			return ReconSprawl
		}
		return OutOfRole
	case anomaly.FirstSensitive:
		return OutOfRole
	case anomaly.ZombieRoute:
		return ZombieAPI
	case anomaly.NewSourceIP:
		return CredentialReplay
	case anomaly.OffHours:
		return OffHours
	case anomaly.SustainedExcess:
		// Calls and bytes a few times the usual, kept up for hours: data
		// leaving slowly, under every per-minute threshold.
		return SlowExfiltration
	}
	return Unclassified
}

// KindClasses returns the classes Classify can give an anomaly of kind
// k, in Classes() order; for an unknown kind, Unclassified. Playbook
// validation uses it to know which kinds a class trigger can match.
func KindClasses(k string) []Class {
	switch k {
	case anomaly.Behaviour, anomaly.Drift:
		return []Class{Exfiltration, SlowExfiltration, IDEnumeration, AuthStorm, ReconSprawl, OutOfRole,
			OffHours, CredentialReplay, ZombieAPI, Unclassified}
	case anomaly.ShadowAgent, anomaly.AgentFlood:
		return []Class{ShadowAgent}
	case anomaly.GlobalEvent, anomaly.FleetGauge:
		return []Class{FleetEvent}
	case anomaly.UnapprovedRoute:
		return []Class{ReconSprawl, OutOfRole}
	case anomaly.FirstSensitive:
		return []Class{OutOfRole}
	case anomaly.ZombieRoute:
		return []Class{ZombieAPI}
	case anomaly.NewSourceIP:
		return []Class{CredentialReplay}
	case anomaly.OffHours:
		return []Class{OffHours}
	case anomaly.SustainedExcess:
		return []Class{SlowExfiltration}
	}
	return []Class{Unclassified}
}

// expl indexes an explanation by feature name, keeping only the features
// observed above their expectation: a feature below what was expected is
// never the reason for an alert, whether or not the detector lists it.
type expl map[string]anomaly.Feature

func explain(a anomaly.Anomaly) expl {
	e := make(expl, len(a.Explanation))
	for _, f := range a.Explanation {
		if f.Observed > f.Expected {
			e[f.Name] = f
		}
	}
	return e
}

// share sums the contributions of the named features.
func (e expl) share(names ...string) float64 {
	s := 0.0
	for _, n := range names {
		if c := e[n].Contribution; c > 0 {
			s += c
		}
	}
	return s
}

// ratio is the largest observed/expected of the named features present,
// +Inf for one expected at 0, and 1 when none is present.
func (e expl) ratio(names ...string) float64 {
	r, any := 0.0, false
	for _, n := range names {
		f, ok := e[n]
		if !ok {
			continue
		}
		any = true
		if f.Expected <= 0 {
			return math.Inf(1)
		}
		r = max(r, f.Observed/f.Expected)
	}
	if !any {
		return 1
	}
	return r
}

// signature classifies a behaviour or drift anomaly: the class whose
// features carry the largest share of the window's surprise wins, if that
// share is at least MinShare. Response bytes name an exfiltration when
// they are that class, and also, whatever else the window shows, when
// they are three orders of magnitude above the usual: a bulk export can be
// drowned out by the flood of sensitive calls that carries it, and it is
// the class where minutes matter. An anomaly that fits no class is
// off-hours use when the detector flagged the hour, else Unclassified.
func signature(a anomaly.Anomaly) Class {
	e := explain(a)
	shares := []struct {
		class Class
		share float64
	}{
		// In order of preference on a tie.
		{Exfiltration, e.share(fRespBytes, fRespBytesMax)},
		{IDEnumeration, enumerationShare(e)},
		{AuthStorm, e.share(fDenials)},
		{ReconSprawl, e.share(fNewRoutes, fDistinctRoutes)},
		{CredentialReplay, e.share(fNewIPs, fDistinctIPs)},
		{ZombieAPI, e.share(fDeprecated)},
		{OutOfRole, e.share(fSensitive)},
	}
	best, bestShare := Unclassified, 0.0
	for _, s := range shares {
		if s.share >= MinShare && s.share > bestShare {
			best, bestShare = s.class, s.share
		}
	}
	if bytes := shares[0].share; best != Exfiltration && bytes >= minBytesShare && e.ratio(fRespBytes, fRespBytesMax) >= minBytesRatio {
		best = Exfiltration
	}
	switch {
	case best == Exfiltration && (a.Kind == anomaly.Drift || e.ratio(fCalls) < maxSlowCallsRatio):
		return SlowExfiltration
	case best == Unclassified && hasFeature(a, fOffHours):
		return OffHours
	}
	return best
}

// enumerationShare is the share of max_ids_per_route, the count of
// distinct ids under one route, when it is the window's story: many ids
// of one route beyond the usual. When sensitive calls explain more, the
// ids are those of an out-of-role sensitive route and the share is 0.
func enumerationShare(e expl) float64 {
	s := e.share(fMaxIDs)
	if s < e.share(fSensitive) {
		return 0
	}
	return s
}

// hasFeature reports whether a's explanation names the feature at all,
// above or below its expectation: the detector's off-hours term records
// the hour of the week, which has no "above".
func hasFeature(a anomaly.Anomaly, name string) bool {
	for _, f := range a.Explanation {
		if f.Name == name {
			return true
		}
	}
	return false
}
