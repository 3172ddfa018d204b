package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/vissvc"
)

// The web console (console.enabled) reads the same ClickHouse source as
// the visibility commands; it is looked up when the responder starts, so
// whichever package connects vissvc's hook has done so by then.
func init() {
	respsvc.ConsoleSource = func(ctx context.Context, cfg config.Config, log *slog.Logger) (visibility.Source, func(), error) {
		if vissvc.NewClickHouseSource == nil {
			return nil, nil, fmt.Errorf("console.enabled: %w", vissvc.ErrNoClickHouseSource)
		}
		return vissvc.NewClickHouseSource(ctx, cfg, log)
	}
}
