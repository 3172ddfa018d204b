package main

import (
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
)

// runFalsePositive marks an anomaly of an incident a false positive, as the
// Slack button does (respctl.FalsePositive).
func runFalsePositive(args []string) error {
	fs := cli.FlagSet("responder false-positive")
	incident := fs.String("incident", "", "the incident (responder incidents lists them)")
	anomalyID := fs.String("anomaly", "", "the anomaly id")
	api := fs.String("api", "", "the running responder's API base URL (default http://responder.api_addr)")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	if *incident == "" || *anomalyID == "" {
		return cli.Usagef("usage: responder false-positive --incident ID --anomaly ID")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	return respctl.FalsePositive(ctx, cfg, log, respctl.FalsePositiveOptions{IncidentID: *incident, AnomalyID: *anomalyID, API: *api}, os.Stdout)
}
