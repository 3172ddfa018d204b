package revoke_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// Example wires what a responder needs: one Egress, Ledger, Budget, kill
// switch and Metrics for the process, and a Guard per adapter.
func Example() {
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "responder")
	m := revoke.NewMetrics(prometheus.NewRegistry())

	egress, err := revoke.NewEgress(revoke.EgressOptions{
		Allow:   []string{"127.0.0.1:8001", "hooks.internal:9443"},
		Metrics: m,
	})
	if err != nil {
		panic(err) // main: exit 2, bad config
	}
	ledger, err := revoke.OpenFileLedger("/var/lib/agentwatch/revocations.jsonl")
	if err != nil {
		panic(err)
	}
	budget, err := revoke.NewBudget(5, time.Hour, nil)
	if err != nil {
		panic(err)
	}
	if err := budget.SeedFrom(ctx, ledger); err != nil { // a restart must not reset the budget
		panic(err)
	}
	var fromSlack revoke.Switch
	kill := revoke.AnySwitch{&fromSlack, revoke.FileSwitch("/etc/agentwatch/stop-revocations")}

	kong, err := revoke.NewKong(revoke.KongOptions{AdminURL: "http://127.0.0.1:8001", Token: os.Getenv("KONG_ADMIN_TOKEN"), Egress: egress, Metrics: m, Log: log})
	if err != nil {
		panic(err)
	}
	var r revoke.Revoker
	r, err = revoke.NewGuard(kong, revoke.Options{Ledger: ledger, Budget: budget, Kill: kill, Metrics: m, Log: log})
	if err != nil {
		panic(err)
	}

	t := revoke.Target{CredentialID: "4f1c…", AgentID: "billing-bot", Consumer: "billing-bot", IncidentID: "inc-42"}
	res, err := r.Revoke(ctx, t)
	var approval *revoke.ApprovalError
	switch {
	case errors.As(err, &approval):
		// Post a Slack approval request saying approval.Detail; on
		// "approve", call Revoke again with t.Origin = revoke.Approved.
	case err != nil:
		// Audit the failure; the record stays pending and a later
		// Revoke of the same target resumes it.
	default:
		_ = res.Status // audit: revoked or already_revoked
	}
}
