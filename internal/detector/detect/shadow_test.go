package detect

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// shadowGen is the hostile tester's stream: on each of parts partitions,
// perMinute never-registered agent ids appear every minute for minutes
// minutes from base, each calling three times in its first minute and
// once a minute after that. id names agent n of a partition, real a
// registered agent of it whose last call moves the partition's watermark
// past the stream; cred and ip give an agent's credential and source
// address ("" for none).
type shadowGen struct {
	base                      int64
	parts, perMinute, minutes int
	id                        func(part, n int) string
	real                      func(part int) string
	cred, ip                  func(n int) string
}

const shadowBase = int64(1_800_000_000_000) // a minute boundary

func shadowStream(parts, perMinute, minutes int, cred, ip func(n int) string) []rec {
	return shadowGen{
		base: shadowBase, parts: parts, perMinute: perMinute, minutes: minutes,
		id:   func(part, n int) string { return fmt.Sprintf("ghost-p%d-%04d", part, n) },
		real: func(int) string { return "real" }, cred: cred, ip: ip,
	}.records()
}

func (g shadowGen) records() []rec {
	var out []rec
	next := make([]int64, g.parts)
	add := func(part int, agent string, n int, at int64) {
		ev := event.Event{
			AgentID: agent, EventTimeMs: at, IngestTimeMs: at + 500,
			Route: "/v1/things/{id}", Path: fmt.Sprintf("/v1/things/%d", n), Method: "GET", Status: 200,
			CredentialID: g.cred(n), SourceIP: g.ip(n), RequestID: fmt.Sprintf("req-%d-%d", part, next[part]),
			EventID: fmt.Sprintf("ev-%d-%08d", part, next[part]), Topic: "raw", Partition: 0, Offset: next[part],
		}
		out = append(out, rec{int32(part), next[part], ev})
		next[part]++
	}
	for m := range g.minutes {
		for part := range g.parts {
			t0 := g.base + int64(m)*60_000
			// The agents of earlier minutes keep calling, once a minute.
			for n := range m * g.perMinute {
				add(part, g.id(part, n), n, t0+int64(n%50)*1000)
			}
			for i := range g.perMinute {
				n := m*g.perMinute + i
				for c := range 3 {
					add(part, g.id(part, n), n, t0+int64(i%50)*1000+int64(c)*100)
				}
			}
		}
	}
	for part := range g.parts {
		add(part, g.real(part), -1, g.base+int64(g.minutes+1)*60_000)
	}
	return out
}

func shadowProcessor(t *testing.T) *Processor {
	t.Helper()
	reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: real\n    role: r\n"))
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.NewAgentsPerWindow = 200 // the stream stays below agent_flood
	set.StartupHold = -1
	// Wall time well after the stream: it only stamps DetectedMs.
	now := func() int64 { return shadowBase + 24*time.Hour.Milliseconds() }
	return NewProcessor(set, StaticCatalog{reg, inventory.EmptyInventory()}, now)
}

// TestShadowAgentsFold: 50 new unregistered ids per partition per minute
// for 5 minutes, below the agent_flood threshold, give one shadow-agent
// finding per partition, window and group (credential, else source
// address; past MaxShadowFindings groups, the partition), never one per
// id. Each names its agents and counts them, and every fake id is in
// exactly one finding.
func TestShadowAgentsFold(t *testing.T) {
	const parts, perMinute, minutes = 2, 50, 5
	none := func(int) string { return "" }
	cases := []struct {
		name     string
		cred, ip func(n int) string
		// groups is how many findings each partition raises per window.
		groups int
		// agentPrefix is what the findings' agent ids start with.
		agentPrefix string
		// credential is the credential_id the findings carry.
		credential string
	}{
		{"no credential, no address", none, none, 1, "*shadow/p", ""},
		{"one stolen credential", func(int) string { return "key-stolen" }, none, 1, "*shadow/p", "key-stolen"},
		{"one source address", none, func(int) string { return "203.0.113.7" }, 1, "*shadow/p", ""},
		{"three credentials", func(n int) string { return fmt.Sprint("key-", n%3) }, none, 3, "*shadow/p", ""},
		{"an address per id", none, func(n int) string { return fmt.Sprintf("198.51.%d.%d", n/250, n%250) }, 1, "*shadow/p", ""},
		{"a credential per id", func(n int) string { return fmt.Sprint("key-", n) }, none, 1, "*shadow/p", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := shadowProcessor(t)
			as, _ := run(p, shadowStream(parts, perMinute, minutes, tc.cred, tc.ip))
			var shadows []anomaly.Anomaly
			for _, a := range as {
				switch a.Kind {
				case anomaly.ShadowAgent:
					shadows = append(shadows, a)
				case anomaly.AgentFlood:
					t.Fatalf("agent_flood raised below its threshold: %s", a.Summary)
				}
			}
			if want := parts * minutes * tc.groups; len(shadows) != want {
				t.Fatalf("%d shadow-agent findings, want %d (one per partition, window and group)", len(shadows), want)
			}
			seen := map[string]int{}
			perWindow := map[string]int{}
			for _, a := range shadows {
				if !a.Grouped() || !strings.HasPrefix(a.AgentID, tc.agentPrefix) {
					t.Errorf("finding for %q is not a grouped shadow finding", a.AgentID)
				}
				if a.ID != anomaly.ID(a.AgentID, a.WindowStartMs, a.Kind) {
					t.Errorf("finding %s: id is not the id of its agent, window and kind", a.AgentID)
				}
				if tc.credential != "" && a.CredentialID != tc.credential {
					t.Errorf("finding %s: credential_id %q, want %q", a.AgentID, a.CredentialID, tc.credential)
				}
				if a.Count != len(a.AgentIDs) || len(a.AgentIDs) > anomaly.MaxAgentIDs || !slices.IsSorted(a.AgentIDs) {
					t.Errorf("finding %s: count %d with %d sorted=%v ids", a.AgentID, a.Count, len(a.AgentIDs), slices.IsSorted(a.AgentIDs))
				}
				if !strings.Contains(a.Summary, fmt.Sprintf("%d agents not in the agent registry", a.Count)) ||
					!strings.Contains(a.Summary, a.AgentIDs[0]) {
					t.Errorf("summary does not give the count and the ids: %s", a.Summary)
				}
				if len(a.SampleEventIDs) == 0 || len(a.Routes) == 0 || a.Routes[0].Route != "/v1/things/{id}" {
					t.Errorf("finding %s: no evidence (samples %v, routes %v)", a.AgentID, a.SampleEventIDs, a.Routes)
				}
				perWindow[fmt.Sprint(a.Partition, "/", a.WindowStartMs)] += a.Count
				for _, id := range a.AgentIDs {
					seen[id]++
				}
			}
			if len(perWindow) != parts*minutes {
				t.Errorf("findings cover %d partition windows, want %d", len(perWindow), parts*minutes)
			}
			for w, n := range perWindow {
				if n != perMinute {
					t.Errorf("partition/window %s: findings count %d agents, want %d", w, n, perMinute)
				}
			}
			if len(seen) != parts*perMinute*minutes {
				t.Errorf("%d distinct ids listed, want %d", len(seen), parts*perMinute*minutes)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s listed in %d findings", id, n)
				}
			}
			if st := p.Stats(); st.ShadowFolded != parts*perMinute*minutes || st.Anomalies[anomaly.ShadowAgent] != uint64(len(shadows)) {
				t.Errorf("stats: folded %d (want %d), shadow anomalies %d (want %d)",
					st.ShadowFolded, parts*perMinute*minutes, st.Anomalies[anomaly.ShadowAgent], len(shadows))
			}
		})
	}
}

// TestShadowFoldCapsListedIDs: more unregistered ids than MaxAgentIDs in a
// window still give one finding, whose count is the total and whose list
// is capped.
func TestShadowFoldCapsListedIDs(t *testing.T) {
	p := shadowProcessor(t)
	none := func(int) string { return "" }
	as, _ := run(p, shadowStream(1, 180, 1, none, none))
	var got []anomaly.Anomaly
	for _, a := range as {
		if a.Kind == anomaly.ShadowAgent {
			got = append(got, a)
		}
	}
	if len(got) != 1 || got[0].Count != 180 || len(got[0].AgentIDs) != anomaly.MaxAgentIDs {
		t.Fatalf("findings %d; want one with count 180 and %d ids listed, got %+v", len(got), anomaly.MaxAgentIDs, got)
	}
	if !strings.Contains(got[0].Summary, "and 170 more") {
		t.Errorf("summary does not say how many more: %s", got[0].Summary)
	}
}

// TestShadowLoneAgentKeepsItsOwnFinding: one unregistered agent in its
// group keeps the per-agent finding (its own id, its calls), which a
// playbook can act on, next to a folded group on the same partition.
func TestShadowLoneAgentKeepsItsOwnFinding(t *testing.T) {
	p := shadowProcessor(t)
	rs := shadowStream(1, 4, 1, func(n int) string {
		if n == 3 {
			return "key-own"
		}
		return "key-shared"
	}, func(int) string { return "" })
	as, _ := run(p, rs)
	byAgent := map[string]anomaly.Anomaly{}
	for _, a := range as {
		if a.Kind == anomaly.ShadowAgent {
			byAgent[a.AgentID] = a
		}
	}
	if len(byAgent) != 2 {
		t.Fatalf("findings for %v, want one folded and one lone", slices.Sorted(func(yield func(string) bool) {
			for k := range byAgent {
				if !yield(k) {
					return
				}
			}
		}))
	}
	lone, ok := byAgent["ghost-p0-0003"]
	if !ok || lone.Grouped() || lone.Count != 3 || len(lone.AgentIDs) != 0 {
		t.Errorf("lone agent's finding = %+v, want its own with 3 calls", lone)
	}
	for id, a := range byAgent {
		if a.Grouped() && (a.Count != 3 || a.CredentialID != "key-shared" ||
			!reflect.DeepEqual(a.AgentIDs, []string{"ghost-p0-0000", "ghost-p0-0001", "ghost-p0-0002"})) {
			t.Errorf("folded finding %s = %+v", id, a)
		}
	}
}

// TestShadowFoldIndependentOfArrivalOrder: the same records, shuffled
// within each window and with the partitions interleaved differently,
// give exactly the same findings: ids and content.
func TestShadowFoldIndependentOfArrivalOrder(t *testing.T) {
	cred := func(n int) string { return fmt.Sprint("key-", n%3) }
	ip := func(n int) string { return fmt.Sprintf("192.0.2.%d", n%7) }
	rs := shadowStream(2, 50, 3, cred, ip)
	want, wantScores := norm(run(shadowProcessor(t), rs))
	if len(want) == 0 {
		t.Fatal("no findings at all")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 3 {
		// Shuffle the records of each partition and minute among
		// themselves (they stay within the lateness), then interleave
		// the partitions at random; offsets follow the new order.
		byKey := map[[2]int64][]rec{}
		var keys [][2]int64
		for _, r := range rs {
			k := [2]int64{int64(r.part), r.ev.EventTimeMs / 60_000}
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], r)
		}
		queues := map[int32][]rec{}
		for _, k := range keys {
			g := byKey[k]
			rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
			queues[int32(k[0])] = append(queues[int32(k[0])], g...)
		}
		var shuffled []rec
		next := map[int32]int64{}
		for len(queues) > 0 {
			parts := slices.Sorted(func(yield func(int32) bool) {
				for k := range queues {
					if !yield(k) {
						return
					}
				}
			})
			pt := parts[rng.IntN(len(parts))]
			r := queues[pt][0]
			queues[pt] = queues[pt][1:]
			if len(queues[pt]) == 0 {
				delete(queues, pt)
			}
			r.off = next[pt]
			next[pt]++
			shuffled = append(shuffled, r)
		}
		got, gotScores := norm(run(shadowProcessor(t), shuffled))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("trial %d: findings differ with the arrival order:\n got %+v\nwant %+v", trial, got, want)
		}
		if len(gotScores) != len(wantScores) {
			t.Fatalf("trial %d: %d window scores, want %d", trial, len(gotScores), len(wantScores))
		}
	}
}
