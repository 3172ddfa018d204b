package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// FlagSet, Load and Exit serve the commands not yet on cobra; they go
// when the last command moves.
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

// Exit prints err (if any) and exits with the matching code.
func Exit(service string, err error) {
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(ExitOK)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", service, err)
	}
	os.Exit(Report(os.Stderr, service, nil) + exitCode(err))
}

func exitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitFailure
}
