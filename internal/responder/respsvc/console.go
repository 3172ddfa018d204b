package respsvc

import (
	"context"
	"log/slog"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/invwatch"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// ConsoleSource opens the visibility Source the web console reads in the
// distributed mode (ClickHouse's summary tables); closeFn releases it.
// cmd/responder sets it; nil leaves the console without a source, and
// console.enabled is then refused at start with a message saying so.
var ConsoleSource func(ctx context.Context, cfg config.Config, log *slog.Logger) (_ visibility.Source, closeFn func(), _ error)

// openConsole gives the web console its source and the fleet of the
// inventory watcher (the registry and route inventory as they are reloaded),
// when console.enabled and the mode has a source.
func (r *Responder) openConsole(ctx context.Context, cfg config.Config, log *slog.Logger, w *invwatch.Watcher) (respond.ConsoleDeps, error) {
	if !cfg.Console.Enabled || !cfg.Distributed() || ConsoleSource == nil {
		return respond.ConsoleDeps{}, nil
	}
	src, closeFn, err := ConsoleSource(ctx, cfg, log)
	if err != nil {
		return respond.ConsoleDeps{}, err
	}
	r.closers = append(r.closers, func() error { closeFn(); return nil })
	d := respond.ConsoleDeps{Source: src, Config: visibility.Config{Lookback: cfg.Console.Lookback}}
	if w != nil {
		d.Registry = func() *inventory.Registry { return w.Current().Registry }
		d.Inventory = func() *inventory.Inventory { return w.Current().Routes }
	}
	return d, nil
}
