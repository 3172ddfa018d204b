package report

import (
	"fmt"
	"time"
)

// FalsePositiveGoal is the share of judged anomalies found false that the
// team aims to stay under.
const FalsePositiveGoal = 0.10

// share renders num of den as a percentage with the fraction.
func share(num, den int, of string) (string, string) {
	if den == 0 {
		return "n/a", "no " + of
	}
	return fmt.Sprintf("%.1f%%", 100*float64(num)/float64(den)), fmt.Sprintf("%d of %d %s", num, den, of)
}

// trend says how now compares with before.
func trend(now, before uint64, prev string) string {
	switch {
	case before == 0 && now == 0:
		return "none in " + prev + " either"
	case before == 0:
		return fmt.Sprintf("none in %s", prev)
	}
	d := 100 * (float64(now) - float64(before)) / float64(before)
	return fmt.Sprintf("%+.0f%% vs %s (%d)", d, prev, before)
}

// Duration renders ms compactly: "850ms", "42s", "4m 10s", "3h 05m", "2d 4h".
func Duration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func count[T int | uint64](x T) string { return fmt.Sprint(x) }

// sections lays the numbers out with their definitions.
func sections(n *Numbers, p, prev Period) []Section {
	m := func(key, label, value, detail, def string) Metric {
		return Metric{Key: key, Label: label, Value: value, Detail: detail, Definition: def}
	}
	ratio := func(key, label string, num, den int, of, def string) Metric {
		v, d := share(num, den, of)
		return m(key, label, v, d, def)
	}
	times := func(key, label string, p50, p90 int64, cnt int, of, def string) Metric {
		if cnt == 0 {
			return m(key, label, "n/a", "no "+of, def)
		}
		return m(key, label, Duration(p50), fmt.Sprintf("median of %d %s; 90th percentile %s", cnt, of, Duration(p90)), def)
	}
	fpDetail := ""
	fpv, fpd := share(n.FalsePositives, n.Judged, "judged anomalies")
	if n.Judged > 0 {
		goal := "within"
		if float64(n.FalsePositives) >= FalsePositiveGoal*float64(n.Judged) {
			goal = "above"
		}
		fpDetail = fmt.Sprintf("%s; %s the %.0f%% goal; %d of %d anomalies were judged", fpd, goal, 100*FalsePositiveGoal, n.Judged, n.Anomalies)
	} else {
		fpDetail = fmt.Sprintf("%s; %d anomalies in the period", fpd, n.Anomalies)
	}
	return []Section{
		{Title: "Inventory", Metrics: []Metric{
			ratio("inventory.agents_registered", "Agents registered", n.AgentsRegistered, n.AgentsSeen, "agents seen",
				"Agents that made at least one call in the period and are in the agent registry, over all agents that made at least one call in the period."),
			ratio("inventory.routes_documented", "Routes documented", n.RoutesDocumented, n.RoutesSeen, "routes called",
				"Routes (normalised templates) called at least once in the period that are in the route inventory or the OpenAPI document, over all routes called in the period."),
			ratio("inventory.ownership", "Ownership coverage", n.AgentsOwned, n.AgentsSeen, "agents seen",
				"Agents seen in the period whose registry entry names an owner, over all agents seen in the period (an unregistered agent has no owner)."),
		}},
		{Title: "Zombie APIs", Metrics: []Metric{
			m("zombies.routes", "Zombie routes called", count(n.Zombies), trend(uint64(n.Zombies), uint64(n.PrevZombies), prev.Name),
				"Routes tagged deprecated in the route inventory that were still called at least once in the period."),
			m("zombies.calls", "Calls to zombie routes", count(n.ZombieCalls), trend(n.ZombieCalls, n.PrevZombieCalls, prev.Name),
				"Calls in the period to the zombie routes above; the trend compares with the same count in the previous period."),
			m("zombies.callers", "Zombie callers", count(n.ZombieCallers), "",
				"Distinct agents that called at least one zombie route in the period."),
		}},
		{Title: "Access policy", Metrics: []Metric{
			ratio("policy.coverage", "Access-policy coverage", n.AgentsWithApproved, n.AgentsSeen, "agents seen",
				"Agents seen in the period whose registry entry lists at least one approved route, over all agents seen in the period."),
			m("policy.unapproved_routes", "Unapproved routes called", count(n.UnapprovedPairs), fmt.Sprintf("%d calls", n.UnapprovedCalls),
				"Agent × route pairs in the period where the agent's registry entry lists approved routes and this route is not one of them; the detail counts their calls."),
			m("policy.denials", "Denied calls (401/403)", count(n.Denials), fmt.Sprintf("%d answered 401, %d answered 403", n.Denied401, n.Denied403),
				"Calls in the period that the API answered 401 Unauthorized or 403 Forbidden, over every agent and route."),
		}},
		{Title: "Anomalies and response", Metrics: []Metric{
			m("anomalies.total", "Anomalies", count(n.Anomalies), "by kind and severity in the table below",
				"Anomalies whose detection window starts in the period, each anomaly id counted once."),
			m("anomalies.false_positive_rate", "False-positive rate", fpv, fpDetail,
				"Anomalies of the period marked false positive by an analyst, over the anomalies of the period that were judged: marked false positive, or acted on by a person (Slack, CLI or API: acknowledged, approved, revoked, quarantined, restored) with a successful audit record naming the anomaly. Verdicts and actions are read up to one period length after the period ends. Anomalies nobody looked at are not in the denominator."),
			times("anomalies.time_to_detect", "Time to detect", n.DetectP50Ms, n.DetectP90Ms, n.Detected, "anomalies",
				"From the end of the anomaly's detection window (the last minute of traffic it describes) to the time the detector emitted it, over the anomalies of the period."),
			times("anomalies.time_to_contain", "Time to contain", n.ContainP50Ms, n.ContainP90Ms, n.Contained, "contained anomalies",
				"From the time the detector emitted the anomaly to the first revoke or quarantine action for it that was carried out (audit result ok, not a dry run), over the anomalies of the period that were contained."),
			m("actions.revocations", "Revocations", count(n.Revocations), fmt.Sprintf("%d more in dry run", n.RevocationsDryRun),
				"Revoke actions carried out in the period (audit result ok, not a dry run); dry-run revocations are counted apart."),
			m("actions.restores", "Restores", count(n.Restores), "",
				"Restore actions (credential or throttle lifted) carried out in the period (audit result ok)."),
		}},
		{Title: "Review", Metrics: []Metric{
			m("review.agents", "Agents to review", count(n.AgentsToReview), "listed below with their findings",
				"Agents with at least one open least-privilege or lifecycle finding at the time the report was written: shadow, without owner, dormant, registered but never seen, review or credential expiry due, unapproved routes, unused grants, zombie routes called."),
		}},
	}
}
