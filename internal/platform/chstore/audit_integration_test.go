package chstore

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

func auditRecords() []audit.Record {
	base := int64(1_740_000_000_000) // 2025-02-19
	rec := func(id, agent, incident string, at int64) audit.Record {
		return audit.Record{
			ID: id, AtMs: at, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke",
			Playbook: "exfil", DecisionID: "d-" + id, StepID: "d-" + id + "-0", IncidentID: incident,
			AnomalyID: "an-" + id, AgentID: agent, CredentialID: "cred-" + agent, Why: "score 12 > 9",
			Result: audit.ResultOK, Detail: "kong answered 204",
		}
	}
	recs := []audit.Record{
		rec("r1", "a", "inc-1", base),
		rec("r2", "a", "inc-1", base+1),
		rec("r3", "b", "inc-2", base+1),
		rec("r0", "a", "inc-1", base+1),               // same at_ms as r2: ordered by id
		rec("r4", "a", "inc-3", base+40*24*3600*1000), // next month's partition
		rec("r5", "b", "", base+2),
	}

	hostile := rec("r6", "\x1b[31mevil\"agent'\n", "inc-2", base+3)
	hostile.Actor = audit.Actor{Kind: audit.ActorSlack, Name: "alice ‮gnp.exe", UserID: "U123"}
	hostile.Why = strings.Repeat("long reason ", 2000) // capped by Normalize
	hostile.DryRun, hostile.Result, hostile.Detail = true, audit.ResultDryRun, "bad\xffutf8; DROP TABLE audit"
	recs = append(recs, hostile)
	snap := rec("r7", "b", "inc-4", base+2)
	snap.Action = "snapshot"
	return append(recs, snap)
}

// TestIntegrationAudit runs the same appends and queries against Audit and
// audit.MemStore (the reference) and expects the same answers, with the
// copies of a retried append unmerged and then merged.
func TestIntegrationAudit(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	a := NewAudit(st)
	stopMerges(t, st, "audit")
	ref := &audit.MemStore{}
	recs := auditRecords()
	for _, s := range []audit.Store{a, ref} {
		if err := s.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		// A retried append of some of them, in another INSERT.
		if err := s.Append(ctx, recs[1], recs[6], recs[2]); err != nil {
			t.Fatal(err)
		}
	}
	if n := rowCount(t, st, "audit"); n != uint64(len(recs)+3) {
		t.Fatalf("audit has %d rows; want %d, copies unmerged", n, len(recs)+3)
	}
	base := recs[0].AtMs
	filters := []audit.Filter{
		{},
		{AgentID: "a"},
		{AgentID: "b", FromMs: base + 1},
		{IncidentID: "inc-1"},
		{IncidentID: "inc-2", AgentID: recs[6].AgentID},
		{FromMs: base + 1, ToMs: base + 3},
		{FromMs: base + 1, ToMs: base + 1},
		{Limit: 3},
		{AgentID: "a", Limit: 2, FromMs: base + 1},
		{AgentID: "nobody"},
		{FromMs: -5, ToMs: base + 50*24*3600*1000},
		{Action: "snapshot"},
		{Action: "revoke", AgentID: "b"},
		{Action: "nothing"},
	}
	check := func(when string) {
		t.Helper()
		for _, f := range filters {
			got, err := a.Query(ctx, f)
			if err != nil {
				t.Fatalf("%s: Query(%+v): %v", when, f, err)
			}
			want, err := ref.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: Query(%+v) =\n%+v\nwant (MemStore)\n%+v", when, f, ids(got), ids(want))
			}
		}
	}
	check("unmerged")
	got, err := a.Query(ctx, audit.Filter{IncidentID: "inc-2"})
	if err != nil || len(got) != 2 || got[1].Actor.Name != "alice ‮gnp.exe" || len(got[1].Why) > 4096 || !got[1].DryRun {
		t.Fatalf("hostile record read back as %+v, %v", got, err)
	}
	mergeNow(t, st, "audit")
	if n := rowCount(t, st, "audit"); n != uint64(len(recs)) {
		t.Errorf("audit has %d rows after merging; want %d", n, len(recs))
	}
	check("merged")
}

func ids(recs []audit.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
