package respsvc

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/invwatch"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// console gives the web console (console.enabled) the visibility source
// the API asks, opening it when the API has not (no tokens), with the
// same fleet. No source (a build without the ClickHouse source): Build
// refuses console.enabled and says why.
func (r *Responder) console(ctx context.Context, cfg config.Config, watcher *invwatch.Watcher, log *slog.Logger, reg prometheus.Registerer) (respond.ConsoleDeps, error) {
	if !r.visOpened {
		if _, err := r.visibility(ctx, cfg, watcher, log, reg); err != nil {
			return respond.ConsoleDeps{}, err
		}
	}
	if r.visSrc == nil {
		return respond.ConsoleDeps{}, nil
	}
	return respond.ConsoleDeps{Source: r.visSrc, Registry: r.visReg, Inventory: r.visInv, Metrics: r.visMetrics}, nil
}
