package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

func simulate(args []string) error {
	fs := pflag.NewFlagSet("agentwatch simulate", pflag.ContinueOnError)
	seed := fs.Uint64("seed", 1, "random seed: the same flags give the same lines")
	agents := fs.Int("agents", 60, "registered agents to simulate")
	duration := fs.Duration("duration", time.Hour, "simulated time span")
	start := fs.String("start", "", "simulated start, RFC 3339 (default: now minus --duration, so every line is inside ingest's accepted time window)")
	formats := fs.String("format", "", "comma-separated formats to emit (default all: "+strings.Join(sim.KnownFormats, ",")+")")
	rate := fs.Float64("rate", 0, "lines per second to write (0 = as fast as possible)")
	garbage := fs.Float64("garbage-rate", 0, "share of lines replaced by bad lines of every kind (0..1)")
	noTooLarge := fs.Bool("no-too-large", false, "leave out >1 MiB garbage lines (for brokers with the default 1 MB message limit)")
	noIncidents := fs.Bool("no-incidents", false, "simulate normal traffic only")
	scale := fs.Float64("rate-scale", 1, "multiply every agent's traffic rate")
	ledger := fs.String("ledger", "", "write each line's ground truth (good/bad, reason, incident) as JSON lines to this file")
	incidentsOut := fs.String("incidents-out", "", "write the injected incidents as JSON to this file")
	registryOut := fs.String("registry-out", "", "write the agent registry YAML to this file")
	routesOut := fs.String("routes-out", "", "write the route inventory as an OpenAPI 3 document to this file")
	if err := fs.Parse(args); err != nil {
		return &cli.UsageError{Err: err}
	}
	cfg := sim.Config{Seed: *seed, Agents: *agents, Duration: *duration, GarbageRate: *garbage, RateScale: *scale}
	if *start == "" {
		cfg.Start = time.Now().UTC().Add(-*duration)
	} else {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return cli.Usagef("--start: %v", err)
		}
		cfg.Start = t
	}
	if *formats != "" {
		cfg.Formats = strings.Split(*formats, ",")
	}
	if *noTooLarge {
		for _, k := range sim.GarbageKinds {
			if k != sim.GarbageTooLarge {
				cfg.GarbageKinds = append(cfg.GarbageKinds, k)
			}
		}
	}
	if *noIncidents {
		cfg.Incidents = []sim.IncidentSpec{}
	}
	s, err := sim.New(cfg)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	if err := writeSimFiles(s, *incidentsOut, *registryOut, *routesOut); err != nil {
		return err
	}
	var lw *bufio.Writer
	if *ledger != "" {
		f, err := os.Create(*ledger)
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		defer f.Close()
		lw = bufio.NewWriter(f)
		defer lw.Flush()
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	began := time.Now()
	var n, bad int
	lastReport := began
	for {
		line, ok := s.Next()
		if !ok {
			break
		}
		if *rate > 0 {
			due := began.Add(time.Duration(float64(n) / *rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := out.Flush(); err != nil {
					return fmt.Errorf("write stdout: %w", err)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		} else if ctx.Err() != nil {
			return nil
		}
		out.Write(line.Raw)
		if err := out.WriteByte('\n'); err != nil {
			return fmt.Errorf("write stdout: %w", err)
		}
		if lw != nil {
			rec, _ := json.Marshal(struct {
				N        int    `json:"n"`
				Good     bool   `json:"good"`
				Format   string `json:"format"`
				Reason   string `json:"reason,omitempty"`
				Agent    string `json:"agent,omitempty"`
				Incident string `json:"incident,omitempty"`
			}{n, line.Good, line.Format, line.Reason, line.Event.AgentID, line.Incident})
			lw.Write(rec)
			lw.WriteByte('\n')
		}
		n++
		if !line.Good {
			bad++
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(os.Stderr, "simulate: %d lines (%d bad), simulated clock %s, %.0f lines/s\n", n, bad, s.Clock().Format(time.RFC3339), float64(n)/time.Since(began).Seconds())
		}
	}
	fmt.Fprintf(os.Stderr, "simulate: done, %d lines (%d bad) in %s\n", n, bad, time.Since(began).Round(time.Millisecond))
	return nil
}

func writeSimFiles(s *sim.Simulator, incidents, registry, routes string) error {
	write := func(path string, fn func(f *os.File) error) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		return errors.Join(fn(f), f.Close())
	}
	return errors.Join(
		write(incidents, func(f *os.File) error {
			enc := json.NewEncoder(f)
			enc.SetIndent("", "  ")
			return enc.Encode(s.Incidents())
		}),
		write(registry, func(f *os.File) error { return sim.WriteRegistryYAML(f, s.Registry()) }),
		write(routes, func(f *os.File) error { return sim.WriteOpenAPI(f, s.Routes()) }),
	)
}
