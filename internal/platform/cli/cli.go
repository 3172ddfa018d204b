// Package cli is the plumbing every agentwatch binary shares: the cobra
// command tree's root (--config, --verbose, one hidden --KEY flag per config
// key, `config show`, shell completions, did-you-mean hints), configuration
// loading, loggers, and the exit codes, so each main only declares its
// commands and calls into its service's package.
//
// Exit codes are the same for every binary: 0 ok, 1 a failure at run time
// (a broker that does not answer, a write that keeps failing), 2 a usage or
// configuration error (an unknown flag or command, a bad config value).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/buildinfo"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/pkg/suggest"
)

// Exit codes: 2 for bad usage or configuration, 1 for a failure at run time.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks an error that is the operator's input, not the system:
// the process exits with ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

const (
	flagConfig  = "config"
	flagVerbose = "verbose"
)

// usageTemplate is cobra's, with a pointer to the one place that documents
// the configuration keys (they are hidden from every command's help).
const configNote = `
Configuration: every key is set in the --config file, as an AGENTWATCH_* variable or as a
--KEY flag (e.g. --kafka.brokers=127.0.0.1:9092); "agentwatch config reference" lists them all.
`

// NewRoot returns the root command of binary name. It carries the flags
// every command inherits (--config, --verbose and the hidden --KEY flags),
// the `config show` command, and cobra's help and completion commands.
func NewRoot(name, short, long string) *cobra.Command {
	root := &cobra.Command{
		Use:                        name,
		Short:                      short,
		Long:                       long,
		SilenceUsage:               true,
		SilenceErrors:              true,
		SuggestionsMinimumDistance: 2,
		// Positional arguments the root takes none of are unknown commands.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringP(flagConfig, "c", os.Getenv(config.EnvConfigFile), "YAML configuration file (default $"+config.EnvConfigFile+")")
	pf.BoolP(flagVerbose, "v", false, "log at info level on stderr (operator commands otherwise print warnings and errors only)")
	keys := pflag.NewFlagSet("keys", pflag.ContinueOnError)
	config.Flags(keys)
	keys.VisitAll(func(f *pflag.Flag) {
		f.Hidden = true
		pf.AddFlag(f)
	})
	root.SetFlagErrorFunc(flagError)
	root.SetUsageTemplate(root.UsageTemplate() + configNote)
	root.AddCommand(configCommand(name), versionCommand(name))
	return root
}

// versionCommand is `NAME version`: the version and commit stamped at
// build time (internal/platform/buildinfo), which an operator compares
// with the image's labels.
func versionCommand(name string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit this binary was built from",
		Args:  NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Get().Line(name))
			return err
		},
	}
}

// Group turns cmd into a command that only holds subcommands: run alone it
// says which subcommand is missing, and an unknown one gets a suggestion.
// Both are usage errors.
func Group(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(subs...)
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(c, args[0])
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		var names []string
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		return Usagef("%s needs a subcommand: %s (see %s --help)", c.CommandPath(), strings.Join(names, ", "), c.CommandPath())
	}
	return cmd
}

// A Service is the body of a long-running service's run command: ctx is
// cancelled on SIGINT or SIGTERM, cfg is loaded and log is the service's
// logger (ServiceLogger).
type Service func(ctx context.Context, cfg config.Config, log *slog.Logger) error

// ServiceCommand makes root run service, both alone and as its `run`
// command, which it adds to root and returns. Each service binary declares
// its run command the same way, so it is declared here once.
func ServiceCommand(root *cobra.Command, service Service) *cobra.Command {
	runE := func(cmd *cobra.Command, _ []string) error {
		cfg, err := LoadConfig(cmd)
		if err != nil {
			return err
		}
		return service(cmd.Context(), cfg, ServiceLogger(cmd, cfg, root.Name()))
	}
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the consumer until SIGINT or SIGTERM (the default command)",
		Args:  NoArgs,
		RunE:  runE,
	}
	root.RunE = runE
	root.AddCommand(run)
	return run
}

// NoArgs, ExactArgs, RangeArgs and MaxArgs are cobra's argument checks,
// returning usage errors.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("%s takes no arguments, got %q (see %s --help)", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}

// ExactArgs is cobra.ExactArgs returning a usage error.
func ExactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return Usagef("%s needs %s (see %s --help)", cmd.CommandPath(), what, cmd.CommandPath())
		}
		return nil
	}
}

func unknownCommand(cmd *cobra.Command, arg string) error {
	msg := fmt.Sprintf("unknown command %q for %q", arg, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(arg); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	} else {
		msg += fmt.Sprintf(" (see %s --help)", cmd.CommandPath())
	}
	return &UsageError{Err: errors.New(msg)}
}

// flagError turns pflag's errors into usage errors, with a did-you-mean
// for a misspelt flag or configuration key.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		var known []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) { known = append(known, f.Name) })
		if s := closest(name, known); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		} else {
			msg += fmt.Sprintf(" (see %s --help, and agentwatch config reference for the configuration keys)", cmd.CommandPath())
		}
	}
	return &UsageError{Err: errors.New(msg)}
}

// closest is the nearest name within a distance that grows with the
// name's length, so short names need a close match.
func closest(s string, known []string) string {
	best, bestD := "", 1<<30
	max := 2 + len(s)/8
	for _, k := range known {
		if d := suggest.Distance(s, k, max); d <= max && d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// LoadConfig loads the configuration for cmd: the --config file, the
// AGENTWATCH_* environment and the --KEY flags that were set. Its errors
// are usage errors.
func LoadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString(flagConfig)
	cfg, err := config.Load(path, cmd.Flags())
	if err != nil {
		return config.Config{}, &UsageError{Err: err}
	}
	return cfg, nil
}

// Verbose reports whether --verbose was given.
func Verbose(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool(flagVerbose)
	return v
}

// ServiceLogger is the logger of a long-running service: the log.level
// and log.format the configuration asks for, on stderr.
func ServiceLogger(cmd *cobra.Command, cfg config.Config, service string) *slog.Logger {
	l := cfg.Log
	if Verbose(cmd) && l.Level != "debug" {
		l.Level = "info"
	}
	return Logger(cmd.ErrOrStderr(), l, service)
}

// OperatorLogger is the logger of a command a person runs and reads:
// human-readable text, warnings and errors only unless --verbose.
func OperatorLogger(cmd *cobra.Command, cfg config.Config, service string) *slog.Logger {
	l := config.Log{Level: "warn", Format: "text"}
	if Verbose(cmd) {
		l.Level = cfg.Log.Level
		if l.Level == "warn" || l.Level == "error" {
			l.Level = "info"
		}
	}
	return Logger(cmd.ErrOrStderr(), l, service)
}

// Logger builds a logger writing to w at cfg's level and format.
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

// Main runs root on the process's arguments, prints an error (if any) and
// exits with the matching code. The context is cancelled on SIGINT/SIGTERM.
func Main(root *cobra.Command) {
	ctx, stop := SignalContext()
	code := Run(ctx, root, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Run runs root on args with the given output streams and returns the exit
// code: what Main does, for tests.
func Run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return Report(stderr, root.Name(), root.ExecuteContext(ctx))
}

// Report prints err for the operator and returns the exit code for it.
func Report(w io.Writer, name string, err error) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(w, "%s: %v\n", name, err)
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailure
}

// configCommand is `NAME config show`, and for the agentwatch binary also
// `config reference`.
func configCommand(name string) *cobra.Command {
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (file, AGENTWATCH_* and flags applied) as YAML, secrets masked",
		Args:  NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(cmd)
			if err != nil {
				return err
			}
			return config.WriteEffective(cmd.OutOrStdout(), cfg)
		},
	}
	subs := []*cobra.Command{show}
	if name == "agentwatch" {
		var markdown bool
		ref := &cobra.Command{
			Use:   "reference",
			Short: "Print every configuration key with its type, default, environment variable and meaning",
			Args:  NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return config.WriteReference(cmd.OutOrStdout(), markdown)
			},
		}
		ref.Flags().BoolVar(&markdown, "markdown", false, "print the Markdown page (docs/configuration.md)")
		subs = append(subs, ref)
	}
	return Group(&cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration" + map[bool]string{true: ", or the reference of every key", false: ""}[name == "agentwatch"],
	}, subs...)
}
