package main

import (
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

func runResponder(args []string) error {
	cfg, err := cli.Load(cli.FlagSet("responder"), args)
	if err != nil {
		return err
	}
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	r, err := respsvc.New(ctx, cfg, respsvc.Options{Log: log, Metrics: obs.NewRegistry(), AfterAction: respsvc.Failpoint(log)})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx)
}
