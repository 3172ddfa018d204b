package preview

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// CommandOptions are `responder preview`'s arguments.
type CommandOptions struct {
	// Inputs are files of anomalies; "-" is standard input.
	Inputs []string
	// Out is the directory the preview is written to.
	Out       string
	Playbooks []string
	// Registry is an agent registry file (agents.yaml), optional.
	Registry string
	// WaitFor is Options.Horizon.
	WaitFor time.Duration
	Stdin   io.Reader
}

// InputError is a mistake in what the operator gave the command (a file
// that is not anomalies): the command exits with the usage code.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Command is `responder preview`: it reads the anomalies, runs them
// through the responder (Run) and writes the preview into o.Out, printing
// what it wrote to w.
func Command(ctx context.Context, cfg config.Config, log *slog.Logger, o CommandOptions, w io.Writer) error {
	var as []anomaly.Anomaly
	for _, in := range o.Inputs {
		got, err := readInput(in, o.Stdin)
		if err != nil {
			return err
		}
		as = append(as, got...)
		if len(as) > MaxAnomalies {
			return &InputError{fmt.Errorf("more than %d anomalies in all; preview fewer at a time", MaxAnomalies)}
		}
	}
	ro := Options{Config: cfg, Playbooks: o.Playbooks, Horizon: o.WaitFor, Log: log}
	if o.Registry != "" {
		b, err := os.ReadFile(o.Registry)
		if err != nil {
			return &InputError{fmt.Errorf("--registry: %w", err)}
		}
		reg, err := inventory.ParseRegistry(o.Registry, b)
		if err != nil {
			return &InputError{fmt.Errorf("--registry: %w", err)}
		}
		ro.Registry = respond.RegistryFunc(func() *inventory.Registry { return reg })
	}
	incidents, err := Run(ctx, as, ro)
	if err != nil {
		return err
	}
	jp, hp, err := Write(o.Out, "agentwatch responder preview", incidents)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d anomalies → %s\nBlock Kit JSON: %s\nHTML view:      %s\n", len(as), Count(incidents), jp, hp)
	return err
}

func readInput(name string, stdin io.Reader) ([]anomaly.Anomaly, error) {
	if name == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		as, err := ReadAnomalies("standard input", stdin)
		if err != nil {
			return nil, &InputError{err}
		}
		return as, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, &InputError{err}
	}
	defer f.Close()
	as, err := ReadAnomalies(name, f)
	if err != nil {
		return nil, &InputError{err}
	}
	return as, nil
}
