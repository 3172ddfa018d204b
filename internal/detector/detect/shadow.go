package detect

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// MaxShadowFindings is the most shadow-agent findings one partition raises
// for one window. Unregistered agents are grouped by credential (or, without
// one, by source address); past this many groups the grouping itself is what
// an attacker controls, so every unregistered agent of the window folds into
// one partition-wide finding.
const MaxShadowFindings = 5

// shadowListed is how many agent ids a folded finding's summary names; the
// record's AgentIDs lists up to anomaly.MaxAgentIDs.
const shadowListed = 10

// shadowHit is one unregistered agent's shadow-agent finding in a closing
// window, held until every agent of the window is evaluated so that the
// window's unregistered agents can be folded (settleShadows).
type shadowHit struct {
	an anomaly.Anomaly
	// cred and ip are the window's smallest credential id and source
	// address ("" when none): the grouping keys.
	cred, ip string
	// first: the agent was first seen in this window.
	first bool
}

// group is the hit's grouping key: its credential, else its source
// address, else "" (the partition as a whole).
func (h *shadowHit) group() string {
	switch {
	case h.cred != "":
		return "credential\x00" + h.cred
	case h.ip != "":
		return "source\x00" + h.ip
	}
	return ""
}

// settleShadows raises the shadow-agent findings held for window ws of pt.
// A lone unregistered agent of a group gets its own finding, as any rule
// hit; several of one group fold into one finding that names them, so a
// stream of fresh ids below the agent_flood threshold is one alert per
// window and group rather than one per id. Hits arrive in agent id order
// (closeWindow sorts the agents), and grouping depends only on each
// window's content, so replay gives what live processing gave.
func (p *Processor) settleShadows(pt *partition, ws int64) {
	hits := p.shadows
	defer func() { clear(hits); p.shadows = hits[:0] }()
	if len(hits) == 0 {
		return
	}
	groups := map[string][]*shadowHit{}
	for i := range hits {
		k := hits[i].group()
		groups[k] = append(groups[k], &hits[i])
	}
	if len(groups) > MaxShadowFindings {
		all := make([]*shadowHit, len(hits))
		for i := range hits {
			all[i] = &hits[i]
		}
		groups = map[string][]*shadowHit{"": all}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g := groups[k]
		if len(g) == 1 {
			p.emit(g[0].an)
			continue
		}
		p.stats.ShadowFolded += uint64(len(g))
		p.emit(p.foldShadows(pt, ws, k, g))
	}
}

// foldShadows builds the one finding that stands for the unregistered
// agents g of window ws, grouped under key (see shadowHit.group). Its
// agent id names the partition and the group (a hash of the credential or
// address, so that an attacker's string never becomes an agent id), and
// stays the same from window to window: the responder threads a lasting
// stream of fresh ids into one incident.
func (p *Processor) foldShadows(pt *partition, ws int64, key string, g []*shadowHit) anomaly.Anomaly {
	agentID := "*shadow/p" + strconv.Itoa(int(pt.id))
	kind, value, _ := strings.Cut(key, "\x00")
	if key != "" {
		sum := sha256.Sum256([]byte(key))
		agentID += "/" + kind + "-" + hex.EncodeToString(sum[:6])
	}
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agentID, ws, anomaly.ShadowAgent), AgentID: agentID, Kind: anomaly.ShadowAgent,
		WindowStartMs: ws, WindowEndMs: ws + p.set.Features.WindowMs,
		Count: len(g), Partition: pt.id,
	}
	p.place(&an, placeShadow)
	if kind == "credential" {
		an.CredentialID = value
	}
	ids := make([]string, 0, len(g))
	routes := map[string]int{}
	type sample struct{ event, request string }
	var samples []sample
	calls, first := 0, 0
	creds := map[string]bool{}
	for _, h := range g {
		ids = append(ids, h.an.AgentID)
		calls += h.an.Count
		if h.first {
			first++
		}
		if h.cred != "" {
			creds[h.cred] = true
		}
		for _, r := range h.an.Routes {
			routes[r.Route] += r.Calls
		}
		for i, e := range h.an.SampleEventIDs {
			s := sample{event: e}
			if i < len(h.an.SampleRequestIDs) {
				s.request = h.an.SampleRequestIDs[i]
			}
			samples = append(samples, s)
		}
	}
	slices.Sort(ids)
	an.AgentIDs = slices.Clone(ids[:min(len(ids), anomaly.MaxAgentIDs)])

	// The top routes and samples over all the agents, chosen by content
	// (calls, then name; smallest event ids) so arrival order cannot change
	// them.
	rs := make([]anomaly.RouteCount, 0, len(routes))
	for r, c := range routes {
		rs = append(rs, anomaly.RouteCount{Route: r, Calls: c})
	}
	slices.SortFunc(rs, func(x, y anomaly.RouteCount) int {
		return cmp.Or(cmp.Compare(y.Calls, x.Calls), strings.Compare(x.Route, y.Route))
	})
	an.Routes = slices.Clone(rs[:min(len(rs), features.MaxTopRoutes)])
	slices.SortFunc(samples, func(x, y sample) int { return strings.Compare(x.event, y.event) })
	for _, s := range samples[:min(len(samples), features.MaxSamples)] {
		an.SampleEventIDs = append(an.SampleEventIDs, s.event)
		an.SampleRequestIDs = append(an.SampleRequestIDs, s.request)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%d agents not in the agent registry called on partition %d in this window (%d of them first seen in it), %d calls in all",
		len(g), pt.id, first, calls)
	switch {
	case kind == "credential":
		fmt.Fprintf(&b, ", all with credential %q", value)
	case kind == "source":
		fmt.Fprintf(&b, ", all from source address %s", value)
	case len(creds) > 0:
		fmt.Fprintf(&b, ", with %d different credentials", len(creds))
	}
	fmt.Fprintf(&b, ". Agents: %s", strings.Join(ids[:min(len(ids), shadowListed)], ", "))
	if len(ids) > shadowListed {
		fmt.Fprintf(&b, " and %d more", len(ids)-shadowListed)
	}
	if len(rs) > 0 {
		fmt.Fprintf(&b, ". Top routes: %s", routeCountList(rs))
	}
	b.WriteString(". One finding for them all, instead of one each.")
	an.Summary = b.String()
	return an
}

func routeCountList(rs []anomaly.RouteCount) string {
	var b strings.Builder
	for i, r := range rs[:min(len(rs), 3)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", r.Route, r.Calls)
	}
	if len(rs) > 3 {
		fmt.Fprintf(&b, " and %d more", len(rs)-3)
	}
	return b.String()
}
