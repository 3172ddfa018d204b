package respond

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// revokeThenNotify is the production playbook whose incident writes
// TestIncidentWritesPerAnomaly counts.
const revokeThenNotify = `
playbooks:
  - name: contain
    trigger: {kinds: [behaviour], features: [response_bytes]}
    final: true
    steps:
      - revoke: {adapter: kong}
      - notify: {channel: "#soc-alerts"}
`

// incidentRecords returns the i/ records of every partition of cl, in
// each partition's order.
func incidentRecords(cl *partstate.MemChangelog) []partstate.Record {
	var out []partstate.Record
	for p := range int32(cl.Partitions()) {
		for _, r := range cl.Records(p) {
			if strings.HasPrefix(r.Key, IncidentPrefix) {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestIncidentWritesPerAnomaly counts the changelog records of the
// incident one anomaly of the revoke-then-notify playbook costs the
// distributed responder (each one a produce round trip at load, where the
// broker's CPU per request is the bottleneck), and checks that what is
// written still restores to the incident the engine holds.
func TestIncidentWritesPerAnomaly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		groupWait time.Duration
		// want is the incident's records: its opening; naming its alert
		// (roots, announced, digested) when the alert is queued; the
		// revocation, with its action on the card (revoked, actions);
		// the severity the posted card showed (carded, written by the
		// alert's own run). It was 5: the action had a write of its own.
		// The alert's name is not folded into the opening: the incident
		// would name an alert not queued yet, and a note or card update
		// queued meanwhile (the revocation done first) would wait for
		// that alert's thread ahead of the alert in its order.
		want int
		// exact: no two writes of the incident can be queued at once,
		// which the incident writer would coalesce into one record.
		exact bool
	}{
		// The revocation's write and the alert's may be queued together
		// (one record): at most want.
		{name: "alert at once", want: 4},
		// The alert runs after the revocation is done.
		{name: "alert after group wait", groupWait: 300 * time.Millisecond, want: 4, exact: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cl := partstate.NewMemChangelog(4)
			r := newRigWith(t, func(r *rig) {
				r.stateLog, r.seen = cl, &memBatchSeen{ids: map[string]bool{}}
				r.playbooks = revokeThenNotify
				r.cfg.Responder.GroupWait = tc.groupWait
			})
			r.kong.Add("agent-1", "cred-1", "secret-key")
			a := exfil("an-1", "agent-1", "cred-1", time.Now().Add(-5*time.Minute).Truncate(time.Minute).UnixMilli())
			a.Severity = "high"
			if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
				t.Fatal(err)
			}
			r.settle()
			id := IncidentID(a)
			in, ok := r.svc.Engine.Incident(id)
			if !ok {
				t.Fatal("no incident")
			}
			// The states the test expects to have been written, so that a
			// count that is right by luck (a change lost) still fails.
			if in.Roots["#soc-alerts"] == "" || len(in.Revoked) != 1 || len(in.Actions) != 1 || in.Carded["#soc-alerts"] != "high" {
				t.Fatalf("incident after the anomaly: roots %v revoked %v actions %v carded %v", in.Roots, in.Revoked, in.Actions, in.Carded)
			}
			recs := incidentRecords(cl)
			t.Logf("%d incident records per anomaly", len(recs))
			for i, rec := range recs {
				t.Logf("record %d: %d bytes", i+1, len(rec.Value))
			}
			if len(recs) > tc.want || (tc.exact && len(recs) != tc.want) {
				t.Errorf("%d incident records written, want %d", len(recs), tc.want)
			}
			held, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			if last := recs[len(recs)-1].Value; !bytes.Equal(last, held) {
				t.Errorf("last record written:\n%s\nincident held:\n%s", last, held)
			}

			// What a new owner of the partitions restores is the incident
			// held.
			s := newPartIncidents(cl, r.owner.Partition)
			if err := partstate.NewOwner(cl, nil, s).Assign(ctx, []int32{0, 1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			got, ok := s.get(id)
			if !ok {
				t.Fatal("the incident was not restored")
			}
			restored, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(restored, held) {
				t.Errorf("restored incident:\n%s\nheld:\n%s", restored, held)
			}
		})
	}
}

// TestAlertsOfIncidentsQueueApart: while one incident's alert waits for
// its write to the state topic, another incident's alert is queued. One
// lock for every incident's alert made each wait for every other's
// writes, which capped an instance near one alert per two round trips.
func TestAlertsOfIncidentsQueueApart(t *testing.T) {
	ctx := context.Background()
	gc := newGate(func(r partstate.Record) bool {
		return alertPayload(r) && bytes.Contains(r.Value, []byte(`"agent_id":"agent-a"`))
	})
	r := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen = &gatesChangelog{MemChangelog: partstate.NewMemChangelog(4), gates: []*writeGate{gc}}, &memBatchSeen{ids: map[string]bool{}}
		r.playbooks = revokeThenNotify
	})
	r.kong.Add("agent-a", "cred-a", "key-a")
	r.kong.Add("agent-b", "cred-b", "key-b")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	a, b := exfil("an-a", "agent-a", "cred-a", start), exfil("an-b", "agent-b", "cred-b", start)
	a.Severity, b.Severity = "high", "high"

	doneA := make(chan error, 1)
	go func() {
		_, err := r.svc.Engine.Handle(ctx, a)
		doneA <- err
	}()
	select {
	case <-gc.held:
	case <-time.After(10 * time.Second):
		t.Fatal("agent-a's alert was never queued")
	}
	doneB := make(chan error, 1)
	go func() {
		_, err := r.svc.Engine.Handle(ctx, b)
		doneB <- err
	}()
	select {
	case err := <-doneB:
		if err != nil {
			t.Fatalf("Handle(agent-b): %v", err)
		}
	case <-time.After(5 * time.Second):
		close(gc.open)
		t.Fatal("agent-b's anomaly waited for agent-a's alert write to the state topic")
	}
	if in, ok := r.svc.Engine.Incident(IncidentID(b)); !ok || in.Roots["#soc-alerts"] == "" {
		t.Fatalf("agent-b's incident does not name its alert while agent-a's write is held: %+v", in.Roots)
	}
	if in, ok := r.svc.Engine.Incident(IncidentID(a)); ok && in.Roots["#soc-alerts"] != "" {
		t.Fatal("agent-a's incident names its alert before the alert's write")
	}
	close(gc.open)
	if err := <-doneA; err != nil {
		t.Fatalf("Handle(agent-a): %v", err)
	}
	r.settle()
	for _, an := range []string{IncidentID(a), IncidentID(b)} {
		if in, ok := r.svc.Engine.Incident(an); !ok || in.Roots["#soc-alerts"] == "" || len(in.Revoked) != 1 {
			t.Fatalf("incident %s after both: roots %v revoked %v", an, in.Roots, in.Revoked)
		}
	}
}
