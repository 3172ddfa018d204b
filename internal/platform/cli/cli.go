// Package cli is the plumbing every agentwatch command shares: flags,
// configuration, the logger, the metrics registry and exit codes, so each
// main stays a few lines long.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// Exit codes: 2 for bad usage or configuration, 1 for a failure at run time.
const (
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks an error that is the operator's input, not the system.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

// FlagSet returns a flag set with --config and one flag per config key.
func FlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringP("config", "c", os.Getenv(config.EnvConfigFile), "YAML config file (env "+config.EnvConfigFile+")")
	config.Flags(fs)
	return fs
}

// Load parses args into fs and loads the configuration it names.
func Load(fs *pflag.FlagSet, args []string) (config.Config, error) {
	if err := fs.Parse(args); err != nil {
		return config.Config{}, &UsageError{Err: err}
	}
	path, _ := fs.GetString("config")
	cfg, err := config.Load(path, fs)
	if err != nil {
		return config.Config{}, &UsageError{Err: err}
	}
	return cfg, nil
}

// Logger builds the service logger from the config.
func Logger(w io.Writer, cfg config.Log, service string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("service", service)
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Exit prints err (if any) and exits with the matching code.
func Exit(service string, err error) {
	if err == nil {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", service, err)
	var ue *UsageError
	if errors.As(err, &ue) || errors.Is(err, pflag.ErrHelp) {
		os.Exit(ExitUsage)
	}
	os.Exit(ExitFailure)
}
