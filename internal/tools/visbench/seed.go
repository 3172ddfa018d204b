package visbench

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// incidentKind is the anomaly kind the detector reports for each kind
// of simulated incident.
var incidentKind = map[sim.IncidentKind]string{
	sim.Exfiltration:       anomaly.Behaviour,
	sim.EndpointSprawl:     anomaly.Behaviour,
	sim.OffHours:           anomaly.OffHours,
	sim.AuthStorm:          anomaly.Behaviour,
	sim.ZombieAPI:          anomaly.ZombieRoute,
	sim.UnregisteredAgent:  anomaly.ShadowAgent,
	sim.SlowExfiltration:   anomaly.Behaviour,
	sim.OutOfRoleSensitive: anomaly.UnapprovedRoute,
	sim.Enumeration:        anomaly.Behaviour,
	sim.NewSourceAddress:   anomaly.NewSourceIP,
}

// Seeded counts the responder records the load wrote.
//
// Responder records are what the timeline and the monthly report read
// besides the traffic. Running the detector and the responder over 50
// million events would take hours here, so the benchmark writes what they
// would have: an anomaly for each simulated incident, detected two
// minutes in, with its credential revoked 30 seconds later (and restored
// the next day for every other one), and a background of low and medium
// anomalies, about 0.5% of the fleet a day, of which a third get a
// false-positive verdict from an analyst. They are written through the
// same chstore calls the detector and the responder use.
type Seeded struct {
	Anomalies, Actions, Verdicts int
}

// seed writes the responder records for o's month into st, unless its
// anomalies table holds some already.
func seed(ctx context.Context, st *chstore.Store, o Options) (Seeded, error) {
	var out Seeded
	from, to := o.Span()
	if as, err := st.Anomalies(ctx, "", from.UnixMilli(), to.UnixMilli()); err != nil {
		return out, fmt.Errorf("visbench: %w", err)
	} else if len(as) > 0 {
		return out, nil
	}
	s, err := sim.New(o.Simulation())
	if err != nil {
		return out, fmt.Errorf("visbench: %w", err)
	}
	reg := s.Registry()
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	var (
		as   []anomaly.Anomaly
		recs []audit.Record
		vs   []anomaly.Verdict
	)
	responder := audit.Actor{Kind: audit.ActorAutomatic, Name: "responder"}
	add := func(agentID, kind, severity string, startMs int64, summary string) anomaly.Anomaly {
		a := anomaly.Anomaly{
			V: 1, AgentID: agentID, Kind: kind, WindowStartMs: startMs, WindowEndMs: startMs + 5*60_000,
			Score: 0.9, Severity: severity, Summary: summary, DetectedMs: startMs + 2*60_000,
			Partition: int32(len(as) % 6),
		}
		if ag, ok := reg.Lookup(agentID); ok {
			a.Role, a.Owner, a.CredentialID = string(ag.Role), ag.Owner, ag.CredentialID
		}
		a.ID = anomaly.ID(a.AgentID, a.WindowStartMs, a.Kind)
		as = append(as, a)
		return a
	}
	for i, inc := range s.Incidents() {
		a := add(inc.Agent, incidentKind[inc.Kind], "high", inc.Start.UnixMilli(), "simulated incident "+string(inc.Kind))
		rec := audit.Record{
			AtMs: a.DetectedMs + 30_000, Actor: responder, Action: string(playbooks.KindRevoke), Playbook: "contain",
			DecisionID: a.ID, IncidentID: a.ID, AnomalyID: a.ID, AgentID: a.AgentID, CredentialID: a.CredentialID,
			Why: "severity high", Result: audit.ResultOK,
		}
		recs = append(recs, rec)
		if i%2 == 0 {
			rec.AtMs += 24 * 3600_000
			rec.Action, rec.Actor, rec.Why = "restore", audit.Actor{Kind: audit.ActorCLI, Name: "analyst"}, "confirmed benign after review"
			recs = append(recs, rec)
		}
	}
	for d := range o.Days {
		day := from.AddDate(0, 0, d).UnixMilli()
		for range max(o.Agents/200, 1) {
			ag := reg.Agents[rng.IntN(len(reg.Agents))]
			sev := "low"
			if rng.IntN(3) == 0 {
				sev = "medium"
			}
			// Windows start on the minute, in business hours.
			start := day + int64(8*60+rng.IntN(10*60))*60_000
			a := add(ag.ID, anomaly.Behaviour, sev, start, "calls above the agent's band")
			recs = append(recs, audit.Record{
				AtMs: a.DetectedMs + 1000, Actor: responder, Action: string(playbooks.KindNotify), Playbook: "notify",
				DecisionID: a.ID, IncidentID: a.ID, AnomalyID: a.ID, AgentID: a.AgentID, Result: audit.ResultOK,
			})
			if rng.IntN(3) == 0 {
				vs = append(vs, anomaly.Verdict{
					ID: "v-" + a.ID, AnomalyID: a.ID, AgentID: a.AgentID, Kind: a.Kind, WindowStartMs: a.WindowStartMs,
					WindowEndMs: a.WindowEndMs, Verdict: anomaly.VerdictFalsePositive, Author: "analyst", AtMs: a.DetectedMs + 3600_000,
				})
			}
		}
	}
	for i := range recs {
		recs[i].ID = recs[i].ContentID()
	}
	if err := chstore.NewAudit(st).Append(ctx, recs...); err != nil {
		return out, fmt.Errorf("visbench: write actions: %w", err)
	}
	fb := chstore.NewFeedback(st)
	for _, v := range vs {
		if err := fb.Put(ctx, v); err != nil {
			return out, fmt.Errorf("visbench: write verdicts: %w", err)
		}
	}
	// Anomalies last: their presence says the seeding finished.
	if err := st.InsertAnomalies(ctx, as); err != nil {
		return out, fmt.Errorf("visbench: write anomalies: %w", err)
	}
	return Seeded{len(as), len(recs), len(vs)}, nil
}
