package respond

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// shadowPlaybooks is the shipped shadow-agent playbook: an alert and a
// one-hour quarantine through the deny-list.
const shadowPlaybooks = `
playbooks:
  - name: shadow-agent
    trigger: {kinds: [shadow_agent]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts", mention: here}
      - quarantine: {adapter: denylist}
        ttl: 1h
`

// The detector folds the unregistered agents of one window and partition
// into one shadow_agent finding (*shadow/p<partition>/…, the ids in
// agent_ids). Fifty fresh ids a minute on each of two partitions for five
// minutes are ten such findings: the responder posts one alert per
// partition, counting and listing the agents, threads the later windows
// under it, and quarantines nothing (a folded finding names no single
// agent; the skip is audited, once per incident).
func TestFoldedShadowAgentsAreOneThreadPerPartition(t *testing.T) {
	const parts, minutes, perMinute = 2, 5, 50
	// One follow-up per minute (no summaries), each in its partition's
	// thread.
	r := denylistRig(t, func(r *rig) {
		r.playbooks = shadowPlaybooks
		r.cfg.Responder.Slack.DigestInterval = 0
	})
	ctx := context.Background()
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	for m := range minutes {
		for p := range parts {
			ws := start.Add(time.Duration(m) * time.Minute).UnixMilli()
			a := anomaly.Anomaly{V: 1, AgentID: fmt.Sprintf("*shadow/p%d/credential-0a1b2c3d4e5f", p), Kind: anomaly.ShadowAgent,
				CredentialID: "key-stolen", Severity: "high", Score: 8, Count: perMinute, Partition: int32(p),
				WindowStartMs: ws, WindowEndMs: ws + 60_000,
				Summary: fmt.Sprintf("%d agents not in the agent registry called on partition %d in this window.", perMinute, p)}
			a.ID = anomaly.ID(a.AgentID, ws, a.Kind)
			for i := range perMinute {
				a.AgentIDs = append(a.AgentIDs, fmt.Sprintf("ghost-p%d-m%d-%02d", p, m, i))
			}
			if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.settle()
	var top, replies int
	for _, post := range r.slack.Posts() {
		if post.Method != "chat.postMessage" || post.Channel != "#soc-alerts" {
			continue
		}
		if post.ThreadTS != "" {
			replies++
			continue
		}
		top++
		for _, want := range []string{"shadow agents", fmt.Sprintf("Agents involved (%d)", perMinute), "ghost-p", "key-stolen"} {
			if !strings.Contains(post.Text+post.Blocks, want) {
				t.Errorf("alert lacks %q:\n%s", want, post.Blocks)
			}
		}
		if strings.Contains(post.Blocks, "aw_quarantine") || strings.Contains(post.Blocks, "aw_revoke") {
			t.Errorf("alert for a folded finding offers a quarantine or revoke button")
		}
	}
	if top != parts || replies != parts*(minutes-1) {
		t.Errorf("%d alerts and %d thread replies; want %d alerts (one per partition) and %d replies", top, replies, parts, parts*(minutes-1))
	}
	if n := len(r.svc.Engine.Incidents()); n != parts {
		t.Errorf("%d incidents; want %d", n, parts)
	}
	if d := denylist(t, r); strings.TrimSpace(d) != "" {
		t.Errorf("deny-list after folded findings: %q; want nothing blocked", d)
	}
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, rec := range recs {
		if rec.Action == "quarantine" && rec.Result == audit.ResultSkipped && strings.Contains(rec.Detail, "single agent") {
			skipped++
		}
	}
	// The later windows are follow-ups of their incident, whose steps ran
	// once: one audited skip per incident.
	if skipped != parts {
		t.Errorf("%d audited quarantine skips; want one per incident, %d", skipped, parts)
	}
}
