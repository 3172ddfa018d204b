package respsvc

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func TestConsoleSharesTheAPISource(t *testing.T) {
	src := visibility.NewMemSource(nil, nil, nil, nil)
	reg := func() *inventory.Registry { return inventory.EmptyRegistry() }
	r := &Responder{visOpened: true, visSrc: src, visReg: reg, visInv: inventory.EmptyInventory}
	d, err := r.console(t.Context(), config.Config{}, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil || d.Source != src || d.Registry == nil || d.Inventory == nil {
		t.Fatalf("console deps %+v, %v: want the API's source and fleet", d, err)
	}
	// Opened, but no source in this build: nothing, and Build says why.
	r = &Responder{visOpened: true}
	if d, err := r.console(t.Context(), config.Config{}, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err != nil || d.Source != nil {
		t.Fatalf("no source: %+v, %v", d, err)
	}
}
