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
// same fleet.
func (r *Responder) console(ctx context.Context, cfg config.Config, watcher *invwatch.Watcher, log *slog.Logger, reg prometheus.Registerer) (respond.ConsoleDeps, error) {
	if !r.visOpened {
		if _, err := r.visibility(ctx, cfg, watcher, log, reg); err != nil {
			return respond.ConsoleDeps{}, err
		}
	}
	return respond.ConsoleDeps{Source: r.visSrc, Registry: r.visReg, Inventory: r.visInv, Metrics: r.visMetrics}, nil
}
