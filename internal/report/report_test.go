package report

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestBuildNumbers(t *testing.T) {
	b, _ := fixtureBuilder()
	r, err := b.Build(context.Background(), november)
	if err != nil {
		t.Fatal(err)
	}
	want := Numbers{
		AgentsSeen: 3, AgentsRegistered: 2, AgentsOwned: 1, AgentsWithApproved: 1,
		// /v1/invoices, /v0/customers, /v1/reports documented; evilRoute not.
		RoutesSeen: 4, RoutesDocumented: 3,
		Zombies: 1, ZombieCalls: 4, ZombieCallers: 2, PrevZombies: 1, PrevZombieCalls: 1,
		// billing-bot → /v0/customers; the shadow agent has no list.
		UnapprovedPairs: 1, UnapprovedCalls: 3,
		Denials: 3, Denied401: 1, Denied403: 2,
		// a0 is October's; a4 counted once.
		Anomalies: 4,
		// a4 (verdict), a1 (quarantined by a person), a3 (restored by a person).
		Judged: 3, FalsePositives: 1,
		Detected: 4, DetectP50Ms: 20_000, DetectP90Ms: 50_000,
		Contained: 2, ContainP50Ms: 120_000, ContainP90Ms: 600_000,
		Revocations: 1, RevocationsDryRun: 1, Restores: 1,
		AgentsToReview: 3,
	}
	if !reflect.DeepEqual(want, r.Numbers) {
		t.Errorf("numbers:\n got %+v\nwant %+v", r.Numbers, want)
	}
	if len(r.Days) != 30 || !r.Days[0].Day.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("days: %d from %v", len(r.Days), r.Days[0].Day)
	}
	// Nov 3: two zombie calls (one 403), a1 high and a2 medium.
	d3 := r.Days[2]
	if d3.ZombieCalls != 2 || d3.Denials != 1 || d3.Anomalies[severityIndex("high")] != 1 || d3.Anomalies[severityIndex("medium")] != 1 {
		t.Errorf("Nov 3: %+v", d3)
	}
	if r.Days[19].Denials != 1 || r.Days[19].Anomalies[severityIndex("critical")] != 1 {
		t.Errorf("Nov 20: %+v", r.Days[19])
	}
	if got := r.Violations; len(got) != 1 || got[0].AgentID != "billing-bot" || got[0].Route != "/v0/customers" || got[0].Calls != 3 || got[0].Denied != 2 {
		t.Errorf("violations: %+v", got)
	}
	if got := r.Zombies; len(got) != 1 || got[0].Calls != 4 || got[0].CallerCount != 2 {
		t.Errorf("zombies: %+v", got)
	}
	if got := r.Review; len(got) != 3 || got[0].AgentID != evilAgent || len(got[0].Kinds) != 2 {
		t.Errorf("review: %+v", got)
	}
	if got := r.ByKind; len(got) != 4 || got[0].Total != 1 {
		t.Errorf("by kind: %+v", got)
	}
	// Every metric has a definition and a value.
	seen := map[string]bool{}
	for _, s := range r.Sections {
		for _, m := range s.Metrics {
			if m.Definition == "" || m.Value == "" || m.Key == "" || seen[m.Key] {
				t.Errorf("metric %+v: empty field or repeated key", m)
			}
			seen[m.Key] = true
		}
	}
	fp := metric(t, r, "anomalies.false_positive_rate")
	if fp.Value != "33.3%" || fp.Detail != "1 of 3 judged anomalies; above the 10% goal; 3 of 4 anomalies were judged" {
		t.Errorf("false-positive rate: %+v", fp)
	}
	if m := metric(t, r, "zombies.calls"); m.Detail != "+300% vs 2026-10 (1)" {
		t.Errorf("zombie trend: %+v", m)
	}
	if m := metric(t, r, "anomalies.time_to_contain"); m.Value != "2m 00s" {
		t.Errorf("time to contain: %+v", m)
	}
}

func metric(t *testing.T, r *Report, key string) Metric {
	t.Helper()
	for _, s := range r.Sections {
		for _, m := range s.Metrics {
			if m.Key == key {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", key)
	return Metric{}
}

func TestBuildEmptyPeriod(t *testing.T) {
	b, _ := fixtureBuilder()
	r, err := b.Build(context.Background(), must(ParsePeriod("2025-W02")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Numbers.AgentsSeen != 0 || len(r.Days) != 7 {
		t.Fatalf("%+v", r.Numbers)
	}
	if m := metric(t, r, "inventory.agents_registered"); m.Value != "n/a" {
		t.Errorf("empty share: %+v", m)
	}
}

func TestDuration(t *testing.T) {
	for ms, want := range map[int64]string{850: "850ms", 42_000: "42s", 250_000: "4m 10s", 3*3600_000 + 300_000: "3h 05m", 52 * 3600_000: "2d 4h"} {
		if got := Duration(ms); got != want {
			t.Errorf("Duration(%d) = %q; want %q", ms, got, want)
		}
	}
}
