package respsvc

import (
	"context"
	"log/slog"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/visibility"
)

func TestOpenConsole(t *testing.T) {
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := visibility.NewMemSource(nil, nil, nil, nil)
	closed := 0
	old := ConsoleSource
	t.Cleanup(func() { ConsoleSource = old })
	ConsoleSource = func(context.Context, config.Config, *slog.Logger) (visibility.Source, func(), error) {
		return src, func() { closed++ }, nil
	}
	r := &Responder{}
	// Off, or in the embedded mode: no source (the embedded mode browses
	// with agentwatch console).
	for _, tc := range []struct {
		enabled bool
		brokers []string
	}{{false, []string{"127.0.0.1:9092"}}, {true, nil}} {
		cfg.Console.Enabled, cfg.Kafka.Brokers = tc.enabled, tc.brokers
		d, err := r.openConsole(t.Context(), cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil || d.Source != nil {
			t.Fatalf("enabled %v brokers %v: source %v, %v", tc.enabled, tc.brokers, d.Source, err)
		}
	}
	cfg.Console.Enabled, cfg.Kafka.Brokers = true, []string{"127.0.0.1:9092"}
	d, err := r.openConsole(t.Context(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil || d.Source != src || d.Config.Lookback != cfg.Console.Lookback {
		t.Fatalf("distributed: %+v, %v", d, err)
	}
	for _, c := range r.closers {
		_ = c()
	}
	if closed != 1 {
		t.Fatalf("source closed %d times, want 1", closed)
	}
}
