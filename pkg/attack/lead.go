package attack

import (
	"slices"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// telling orders the classes from the one that says most about an
// incident to the one that says least. An exfiltration often opens with
// the rule hits of its first calls (a route outside the agent's role, at
// an odd hour); the window that shows the bytes is what the incident is.
// So the data-theft classes come first, then the other attacks, then
// the policy classes that usually only accompany them (out-of-role
// access, off-hours use), then the grouped and unclassified ones.
var telling = []Class{
	Exfiltration, SlowExfiltration, IDEnumeration, CredentialReplay, AuthStorm, ReconSprawl,
	ZombieAPI, ShadowAgent, OutOfRole, OffHours, FleetEvent, Unclassified,
}

// Rank is c's place in the order Lead prefers, 0 for the most telling
// class; an unknown class ranks after Unclassified.
func Rank(c Class) int {
	if i := slices.Index(telling, c); i >= 0 {
		return i
	}
	return len(telling)
}

// Lead returns the class an incident's card names, given the incident's
// anomalies so far in any order: the most telling of their classes (see
// Rank), so a slow exfiltration that first showed as an out-of-role call
// is named an exfiltration as soon as a window shows the bytes. It is
// Unclassified only when no anomaly has a class, or there is none.
//
// A sustained_excess names slow exfiltration only when no other anomaly
// of the incident has a class: it says that the agent pulled more than
// usual for hours, not what it did, and the windows of a storm, a sprawl
// or an enumeration that lasts long enough add up to one as well.
func Lead(as []anomaly.Anomaly) Class {
	lead, excess := Unclassified, false
	for i := range as {
		if as[i].Kind == anomaly.SustainedExcess {
			excess = true
			continue
		}
		if c := Classify(as[i]); Rank(c) < Rank(lead) {
			lead = c
		}
	}
	if lead == Unclassified && excess {
		return SlowExfiltration
	}
	return lead
}
