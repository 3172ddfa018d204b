package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/weblisten"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/internal/visibility/vissvc"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func consoleCommand() *cobra.Command {
	var addr string
	var lookbackDays int
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Browse the embedded data dir in the web console, read-only, on a loopback address",
		Long: `console serves the web console (docs/console.md) over the embedded data dir, for
browsing what "agentwatch demo" recorded: overview, incidents, agents, inventory,
findings, the access search and the reports in console.reports_dir. It is read-only
(no action form), listens on a loopback address only, and re-reads the data dir when
a page finds its copy older than 30 seconds, so a running demo's data shows up.

Sign in with one of responder.tokens; without any, a one-time token is printed at
start. Each page's questions are audited (action ask) in the data dir's responder
audit file, naming the token.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.Distributed() {
				return cli.Usagef("agentwatch console browses the embedded data dir; in the distributed mode enable console.enabled on the responder")
			}
			if lb, err := weblisten.Loopback(addr); err != nil || !lb {
				return cli.Usagef("--addr %q: must be a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", addr)
			}
			if lookbackDays < 1 || lookbackDays > 366 {
				return cli.Usagef("--lookback-days: 1 to 366, got %d", lookbackDays)
			}
			log := cli.OperatorLogger(cmd, cfg, "agentwatch")
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("console: %w", err)
			}
			h, signIn, err := embeddedConsole(cmd.Context(), cfg, log, time.Duration(lookbackDays)*24*time.Hour, cmd.ErrOrStderr())
			if err != nil {
				ln.Close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "console: http://%s/console/\n", ln.Addr())
			if signIn != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "sign in with this one-time token (valid while this process runs): %s\n", signIn)
			}
			mux := http.NewServeMux()
			mux.Handle("/console/", h)
			mux.Handle("/{$}", http.RedirectHandler("/console/", http.StatusSeeOther))
			go func() { _ = h.Limiter().Run(cmd.Context()) }() // it logs its own failures
			go func() { _ = h.Run(cmd.Context()) }()           // the overview kept computed; it logs its own failures
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
			return weblisten.Serve(cmd.Context(), ln, srv, "", log)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8090", "loopback host:port to serve the console on")
	cmd.Flags().IntVar(&lookbackDays, "lookback-days", 30, "how far back the console reads the data dir")
	return cmd
}

// embeddedConsole builds the read-only console over cfg's embedded data
// dir. signIn is the one-time token when the configuration has none.
func embeddedConsole(ctx context.Context, cfg config.Config, log *slog.Logger, lookback time.Duration, progress io.Writer) (_ *console.Handler, signIn string, _ error) {
	now := time.Now
	since := now().UTC().Add(-lookback)
	reg, inv, err := filesource.Fleet(cfg.Embedded.DataDir, cfg.Detector.RegistryFile, cfg.Detector.RoutesFile, cfg.Detector.OpenAPIFile)
	if err != nil {
		return nil, "", err
	}
	if days, _ := os.ReadDir(filepath.Join(cfg.Embedded.DataDir, filesource.EventsDir)); len(days) <= progressDays {
		progress = io.Discard
	}
	// Re-read when a page finds the copy older than
	// filesource.DefaultMaxAge, so a running demo's data shows up; the
	// first read is now, so that a data dir that cannot be read fails the
	// start.
	src := filesource.NewLive(filesource.Options{DataDir: cfg.Embedded.DataDir, Since: since}, 0, nil)
	fmt.Fprintf(progress, "reading %s\n", cfg.Embedded.DataDir)
	if _, err := src.Verdicts(ctx, visibility.Span{From: since, To: now()}); err != nil {
		return nil, "", fmt.Errorf("load %s: %w", cfg.Embedded.DataDir, err)
	}
	al, err := vissvc.EmbeddedAudit(cfg, log)
	if err != nil {
		return nil, "", err
	}
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, al,
		visibility.Config{Lookback: max(lookback, visibility.DefaultLookback)}, now)
	toks := consoleTokens(cfg.Responder.Tokens)
	if len(toks) == 0 {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		signIn = hex.EncodeToString(b)
		toks = []respapi.Token{{Name: "console-" + signIn[:6], Secret: signIn, CanReadInventory: true}}
	}
	// The plots read the window scores the embedded detector keeps,
	// beside it if it runs.
	scores := detstate.ScoreReader{Dir: filepath.Join(cfg.Embedded.DataDir, filesource.DetectorDir)}
	h, err := console.New(console.Options{Visibility: svc, Records: src, Scores: scores, Audit: al, Tokens: toks, ReadOnly: true,
		ReportsDir: cfg.Console.ReportsDir, EvidenceDir: evidenceDir(cfg), Lookback: lookback,
		SessionTTL: cfg.Console.SessionTTL, Prefix: "/console", Log: log, Now: now})
	return h, signIn, err
}

// evidenceDir is where the demo keeps its evidence bundles (the data dir's
// responder directory) when they are there, else responder.evidence_dir.
func evidenceDir(cfg config.Config) string {
	if cfg.Responder.EvidenceDir == "" {
		d := filepath.Join(cfg.Embedded.DataDir, filesource.ResponderDir, "evidence")
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return cfg.Responder.EvidenceRoot()
}

// consoleTokens are the configured API tokens with their own grants:
// console.TokenScope decides what each may do, so a token without
// can_read_inventory (a gateway's deny-list token) cannot sign in here
// either, though the console is read-only.
func consoleTokens(cfg []config.APIToken) []respapi.Token {
	var toks []respapi.Token
	for _, t := range cfg {
		toks = append(toks, respapi.Token{Name: t.Name, SHA256: t.SHA256, SecretEnv: t.SecretEnv, SecretFile: t.SecretFile,
			AllowedPlaybooks: t.AllowedPlaybooks, CanReadAudit: t.CanReadAudit, CanSilence: t.CanSilence, CanReadDenylist: t.CanReadDenylist,
			CanKillSwitch: t.CanKillSwitch, CanRepairOutbox: t.CanRepairOutbox, CanReadInventory: t.CanReadInventory})
	}
	return toks
}
