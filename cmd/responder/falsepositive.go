package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// runFalsePositive marks an anomaly of an incident a false positive, as the
// Slack button does: a silence of the pattern, the verdict to the
// detector, an audit record.
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
	svc, closeFn, inUse, err := localResponder(ctx, cfg, log)
	if inUse {
		api, err := newAPIClient(cfg, *api, "can_silence")
		if err != nil {
			return err
		}
		if _, err := api.call(ctx, http.MethodPost, "/v1/incidents/"+*incident+"/false-positive", map[string]string{"anomaly_id": *anomalyID}); err != nil {
			return err
		}
		fmt.Printf("anomaly %s of incident %s marked a false positive\n", audit.TerminalSafe(*anomalyID, 128), audit.TerminalSafe(*incident, 128))
		return nil
	}
	if err != nil {
		return err
	}
	defer closeFn()
	if err := svc.Engine.FalsePositive(ctx, *incident, *anomalyID, operator()); err != nil {
		return err
	}
	fmt.Printf("anomaly %s of incident %s marked a false positive: the pattern is silenced for %s and the verdict recorded\n",
		audit.TerminalSafe(*anomalyID, 128), audit.TerminalSafe(*incident, 128), cfg.Responder.FalsePositiveSuppress)
	return nil
}
