// Package preview shows what the responder would post to Slack for some
// anomalies, without Slack: `responder preview` runs them through the real
// engine (embedded mode, a temporary state directory, no gateway call) and
// keeps every message with a Capture notifier, then writes their Block Kit
// JSON and an HTML page of each incident's top-level messages and threads.
// The demo uses Capture and the writers too, and counts the messages per
// incident.
package preview

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/playbookcfg"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// Options configure Run.
type Options struct {
	// Config is the responder's configuration: its playbooks and the
	// settings that shape the messages (incident window, repeat interval,
	// approval channel and grouping). Everything that reaches outside
	// (Kafka, Slack, Kong, webhooks, API, keys, files) is replaced.
	Config config.Config
	// Playbooks, when not empty, replace responder.playbooks.
	Playbooks []string
	// Registry answers agent lookups (roles, labels) for the playbooks;
	// nil: only what each anomaly says of its agent.
	Registry respond.Registry
	// Horizon: Run waits for the steps due within this long of any
	// moment, in real time (a thread digest due in a few minutes), not
	// for those due later (an approval's timeout); default 3s.
	Horizon time.Duration
	// Wait bounds how long Run waits for the queued steps; default
	// Horizon plus 30s.
	Wait time.Duration
	Log  *slog.Logger
}

// Run hands anomalies, in order, to a responder of its own built like the
// embedded one, waits until nothing is due within a few seconds, and
// returns what it posted, by incident. Steps that would act on a gateway
// (revoke, throttle, quarantine, webhook) run as dry runs; approval
// requests are posted and stay unanswered; evidence snapshots are taken
// from no events. Nothing is kept after it returns.
func Run(ctx context.Context, as []anomaly.Anomaly, o Options) ([]Incident, error) {
	if len(as) == 0 {
		return nil, errors.New("preview: no anomaly")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	paths := o.Config.Responder.Playbooks
	if len(o.Playbooks) > 0 {
		paths = o.Playbooks
	}
	set, err := playbookcfg.LoadOrBuiltin(paths)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "agentwatch-preview-")
	if err != nil {
		return nil, fmt.Errorf("preview: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := standIn(o.Config, dryRun(set), dir)
	capture := &Capture{}
	svc, err := respond.Build(cfg, respond.Deps{
		Set: set, Events: noEvents{}, Registry: o.Registry,
		// No secret is read from the environment: the preview needs none.
		Getenv:       func(string) string { return "" },
		WrapNotifier: func(n respond.Notifier) respond.Notifier { capture.Inner = n; return capture },
	}, log, prometheus.NewRegistry())
	if err != nil {
		return nil, fmt.Errorf("preview: build the responder: %w", err)
	}
	defer svc.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for _, a := range as {
		if _, err := svc.Engine.Handle(ctx, a); err != nil {
			return nil, fmt.Errorf("preview: anomaly %s: %w", a.ID, err)
		}
	}
	horizon := o.Horizon
	if horizon <= 0 {
		horizon = 3 * time.Second
	}
	wait := o.Wait
	if wait <= 0 {
		wait = horizon + 30*time.Second
	}
	wctx, wcancel := context.WithTimeout(ctx, wait)
	defer wcancel()
	// Entries due later than the horizon (an approval's timeout, a
	// snapshot scheduled after a recent window, an undo) are not waited
	// for.
	if err := svc.Engine.Settle(wctx, horizon); err != nil {
		return nil, fmt.Errorf("preview: the responder did not settle within %s: %w", wait, err)
	}
	incidents, err := capture.Incidents(ctx, svc.Engine.EntryIncident)
	if err != nil {
		return nil, err
	}
	// In the order of the anomalies that opened them, not of their first
	// post (an alert waits for its snapshot, another's does not).
	first := map[string]int{}
	for i, a := range as {
		if _, ok := first[respond.IncidentID(a)]; !ok {
			first[respond.IncidentID(a)] = i
		}
	}
	rank := func(id string) int {
		if i, ok := first[id]; ok {
			return i
		}
		return len(as)
	}
	slices.SortStableFunc(incidents, func(a, b Incident) int { return rank(a.ID) - rank(b.ID) })
	return incidents, nil
}

// standIn is cfg with everything that reaches outside the process
// replaced: no Kafka, no Slack token (the console, discarded, is wrapped
// by the Capture), a fresh signing secret (so the buttons are drawn),
// stand-in Kong and webhook targets for the adapters the playbooks name
// (never called: their steps are dry runs), no API, keys, kill switch or
// deny-list file of the operator's, and state under dir.
func standIn(cfg config.Config, set playbooks.Set, dir string) config.Config {
	cfg.Kafka.Brokers = nil
	rc := cfg.Responder
	rc.StateDir, rc.EvidenceDir = dir, ""
	rc.GroupWait = 0 // every anomaly is handed over before the wait
	rc.APIAddr, rc.APIWebConfigFile, rc.Tokens = "", "", nil
	rc.KillSwitchFile, rc.LedgerKey = "", ""
	rc.Evidence.CheckpointKeyFile = ""
	rc.Denylist.Path = ""
	rc.EgressAllow = nil
	rc.Slack.Token, rc.Slack.TokenEnv, rc.Slack.APIURL = "", "", ""
	rc.Slack.SigningSecret, rc.Slack.SigningSecretEnv = rand.Text(), ""
	// The cap counts posts per wall-clock minute; a preview posts a day's
	// messages in a second.
	rc.Slack.MaxMessagesPerMinute = 0
	rc.Kong = config.Kong{}
	rc.Webhooks = map[string]config.WebhookTarget{}
	refs := set.References()
	for _, a := range refs.Adapters {
		switch a {
		case "kong":
			rc.Kong.AdminURL = "http://kong.preview.invalid"
		case "webhook":
			rc.Webhooks["revoke"] = config.WebhookTarget{URL: "http://webhook.preview.invalid/revoke"}
		}
	}
	for _, t := range refs.WebhookTargets {
		rc.Webhooks[t] = config.WebhookTarget{URL: "http://webhook.preview.invalid/" + t}
	}
	cfg.Responder = rc
	return cfg
}

// dryRun makes every step that would call a gateway a dry run, in place,
// and returns set.
func dryRun(set playbooks.Set) playbooks.Set {
	for i := range set.Playbooks {
		for j := range set.Playbooks[i].Steps {
			st := &set.Playbooks[i].Steps[j]
			if st.Revoke != nil || st.Throttle != nil || st.Quarantine != nil || st.Webhook != nil {
				st.DryRun = true
			}
		}
	}
	return set
}

// noEvents is an event source with no events: the snapshots a preview
// takes are empty bundles, and its alerts name them as Slack's would.
type noEvents struct{}

func (noEvents) Events(context.Context, string, int64, int64, func(*event.Event) error) error {
	return nil
}
