package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/audit"
	"github.com/agentwatch/agentwatch/internal/cli"
	"github.com/agentwatch/agentwatch/internal/outbox"
	"github.com/agentwatch/agentwatch/internal/respond"
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
	deps, closeStores, err := stores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStores()
	local := cfg
	local.Responder.Tokens, local.Responder.APIAddr = nil, ""
	svc, err := respond.Build(local, deps, log, prometheus.NewRegistry())
	if errors.Is(err, outbox.ErrInUse) {
		base := *api
		if base == "" {
			base = "http://" + cfg.Responder.APIAddr
		}
		return falsePositiveViaAPI(ctx, base, *incident, *anomalyID)
	}
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Engine.FalsePositive(ctx, *incident, *anomalyID, operator()); err != nil {
		return err
	}
	fmt.Printf("anomaly %s of incident %s marked a false positive: the pattern is silenced for %s and the verdict recorded\n",
		audit.TerminalSafe(*anomalyID, 128), audit.TerminalSafe(*incident, 128), cfg.Responder.FalsePositiveSuppress)
	return nil
}

func falsePositiveViaAPI(ctx context.Context, base, incident, anomalyID string) error {
	token := os.Getenv("RESPONDER_API_TOKEN")
	if token == "" {
		return errors.New("a responder holds the state directory; to go through its API set RESPONDER_API_TOKEN to a token with can_silence")
	}
	b, _ := json.Marshal(map[string]string{"anomaly_id": anomalyID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/incidents/"+incident+"/false-positive", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("responder API: %w", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("responder API answered %s: %s", resp.Status, audit.TerminalSafe(string(out), 500))
	}
	fmt.Printf("anomaly %s of incident %s marked a false positive\n", audit.TerminalSafe(anomalyID, 128), audit.TerminalSafe(incident, 128))
	return nil
}
