package respsvc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// ModeStores opens the stores of cfg's mode. In the distributed mode they
// are ClickHouse's tables (migrated first). In the embedded mode the
// fields are nil, so respond.Build uses the files under
// responder.state_dir, except Events: the embedded event store, where
// `agentwatch demo` keeps its events, for snapshots. Alerts go to
// os.Stdout when no Slack token is set. closeFn releases the stores; the
// caller calls it once it is done with them.
func ModeStores(ctx context.Context, cfg config.Config, log *slog.Logger) (_ respond.Deps, closeFn func(), _ error) {
	if !cfg.Distributed() {
		es, err := embedstore.Open(filepath.Join(cfg.Embedded.DataDir, "events"))
		if err != nil {
			return respond.Deps{}, nil, err
		}
		return respond.Deps{Console: os.Stdout, Events: respond.EmbeddedEvents{Store: es}}, func() { es.Close() }, nil
	}
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return respond.Deps{}, nil, err
	}
	return clickhouseStores(st), func() { st.Close() }, nil
}

// clickhouseStores are the distributed mode's shared stores on st.
func clickhouseStores(st *chstore.Store) respond.Deps {
	return respond.Deps{Seen: chstore.NewSeen(st), Audit: chstore.NewAudit(st), Chain: chstore.NewChain(st), Events: chstore.NewEvents(st),
		Scores: st, Feedback: chstore.NewFeedback(st), Console: os.Stdout}
}

// Stores opens what a command run by hand reads and writes: ModeStores,
// with the agent registry of detector.registry_file read once (not
// watched), which tells a manual run the agent's credential, role and
// owner. closeFn releases the stores.
func Stores(ctx context.Context, cfg config.Config, log *slog.Logger) (_ respond.Deps, closeFn func(), _ error) {
	d, closeFn, err := ModeStores(ctx, cfg, log)
	if err != nil {
		return d, nil, err
	}
	if f := cfg.Detector.RegistryFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			closeFn()
			return d, nil, fmt.Errorf("detector.registry_file: %w", err)
		}
		r, err := inventory.ParseRegistry(f, b)
		if err != nil {
			closeFn()
			return d, nil, err
		}
		d.Registry = respond.RegistryFunc(func() *inventory.Registry { return r })
	}
	return d, closeFn, nil
}

// OpenAudit opens the audit trail: ClickHouse's table in the distributed
// mode, the state directory's file otherwise. log may be nil. closeFn
// releases the store behind the logger.
func OpenAudit(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *audit.Logger, closeFn func(), _ error) {
	if cfg.Distributed() {
		st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
		if err != nil {
			return nil, nil, err
		}
		return audit.NewLogger(chstore.NewAudit(st), log, time.Now), func() { st.Close() }, nil
	}
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		return nil, nil, err
	}
	fs, err := audit.OpenFileStore(filepath.Join(cfg.Responder.StateDir, respond.AuditFile))
	if err != nil {
		return nil, nil, err
	}
	return audit.NewLogger(fs, log, time.Now), func() {}, nil
}
