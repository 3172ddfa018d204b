// Package attack names what an anomaly most likely is, in the words of an
// analyst: exfiltration, id enumeration, an authentication storm… It maps
// an anomaly's kind and feature signature to one Class, and each class to a
// one-line meaning, what to check first, and the OWASP / MITRE references
// that fit. The responder shows the class on every alert and playbooks
// trigger on it. Pure: no I/O.
package attack

import "slices"

// Class is an attack class an analyst recognises. Its string is stable: it
// is written in playbook files, audit records and metrics labels.
type Class string

// The classes. Unclassified is for an anomaly whose signature fits none.
const (
	Exfiltration     Class = "exfiltration"
	SlowExfiltration Class = "slow_exfiltration"
	IDEnumeration    Class = "id_enumeration"
	AuthStorm        Class = "auth_storm"
	ReconSprawl      Class = "recon_sprawl"
	OutOfRole        Class = "out_of_role"
	OffHours         Class = "off_hours"
	CredentialReplay Class = "credential_replay"
	ZombieAPI        Class = "zombie_api"
	ShadowAgent      Class = "shadow_agent"
	FleetEvent       Class = "fleet_event"
	Unclassified     Class = "unclassified"
)

// Classes lists every class, Unclassified last, for docs and validation.
func Classes() []Class {
	return []Class{Exfiltration, SlowExfiltration, IDEnumeration, AuthStorm, ReconSprawl, OutOfRole,
		OffHours, CredentialReplay, ZombieAPI, ShadowAgent, FleetEvent, Unclassified}
}

// Known reports whether name is one of Classes().
func Known(name string) bool {
	return slices.Contains(Classes(), Class(name))
}

// Ref is one entry of a public catalogue that the class fits.
type Ref struct {
	// Catalogue is e.g. "OWASP API Security Top 10 (2023)", "OWASP Top 10
	// for Agentic Applications", "MITRE ATT&CK".
	Catalogue string
	// ID and Title as the catalogue writes them, e.g. "API1:2023",
	// "Broken Object Level Authorization"; "T1567", "Exfiltration Over Web
	// Service".
	ID    string
	Title string
}

// Info is what an alert shows about a class.
type Info struct {
	Class Class
	// Title is the class as a short human name: "Data exfiltration".
	Title string
	// Meaning is one line: what this usually means.
	Meaning string
	// CheckFirst is one line: what to check first.
	CheckFirst string
	Refs       []Ref
}
