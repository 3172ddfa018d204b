package invwatch

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// FromConfig is the Watcher of the files cfg's detector.registry_file,
// detector.routes_file and detector.openapi_file name, reloaded every
// detector.reload_every. The detector's rules and the responder's agent
// lookups read the same files, so both build their watcher here. log and
// reg may be nil, as for NewWatcher.
func FromConfig(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*Watcher, error) {
	d := cfg.Detector
	w, err := NewWatcher(Files{Registry: d.RegistryFile, Routes: d.RoutesFile, OpenAPI: d.OpenAPIFile}, d.ReloadEvery, log, reg)
	if err != nil {
		return nil, fmt.Errorf("detector registry/routes: %w", err)
	}
	return w, nil
}
