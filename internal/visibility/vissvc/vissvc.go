// Package vissvc builds the visibility Service a command line asks, on
// the configured mode's stores: in the embedded mode the data directory's
// files (filesource) with the questions audited to the embedded
// responder's audit file; in the distributed mode ClickHouse's summary
// tables (through NewClickHouseSource) with the questions audited to the
// audit table.
package vissvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// NewClickHouseSource builds the distributed mode's Source on
// ClickHouse; closeFn releases it. It is the hook the ClickHouse source
// (its own package) is connected through: while it is nil, Open refuses
// the distributed mode with ErrNoClickHouseSource.
var NewClickHouseSource func(ctx context.Context, cfg config.Config, log *slog.Logger) (_ visibility.Source, closeFn func(), _ error)

// ErrNoClickHouseSource: this build has no ClickHouse Source connected.
var ErrNoClickHouseSource = errors.New("the visibility questions on ClickHouse are not connected in this build; unset kafka.brokers to ask the embedded data dir")

// Options say how to open the Service.
type Options struct {
	// Since is the earliest time a question will read (its span's start,
	// or the lookback's): the embedded mode loads no older event.
	Since time.Time
	// Config bounds the questions (lookback, day counts).
	Config visibility.Config
	// Progress gets the embedded mode's loading progress; nil discards.
	Progress io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Open builds the Service of cfg's mode. closeFn releases its stores.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (_ *visibility.Service, closeFn func(), _ error) {
	if err := o.Config.WithDefaults().Validate(); err != nil {
		return nil, nil, err
	}
	reg, inv, err := filesource.Fleet(cfg.Embedded.DataDir, cfg.Detector.RegistryFile, cfg.Detector.RoutesFile, cfg.Detector.OpenAPIFile)
	if err != nil {
		return nil, nil, err
	}
	regFn := func() *inventory.Registry { return reg }
	invFn := func() *inventory.Inventory { return inv }
	if cfg.Distributed() {
		if NewClickHouseSource == nil {
			return nil, nil, ErrNoClickHouseSource
		}
		src, closeSrc, err := NewClickHouseSource(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
		if err != nil {
			closeSrc()
			return nil, nil, err
		}
		al := audit.NewLogger(chstore.NewAudit(st), log, nil)
		return visibility.New(src, regFn, invFn, al, o.Config, o.Now), func() { st.Close(); closeSrc() }, nil
	}
	al, err := EmbeddedAudit(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	src, _, err := filesource.Load(ctx, filesource.Options{DataDir: cfg.Embedded.DataDir, Since: o.Since, Progress: progress})
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", cfg.Embedded.DataDir, err)
	}
	return visibility.New(src, regFn, invFn, al, o.Config, o.Now), func() {}, nil
}

// EmbeddedAudit opens the embedded responder's audit file
// (DATA_DIR/responder/audit.jsonl, where `agentwatch demo` keeps it),
// creating it if needed: the questions go on the same trail as the
// responder's actions.
func EmbeddedAudit(cfg config.Config, log *slog.Logger) (*audit.Logger, error) {
	dir := filepath.Join(cfg.Embedded.DataDir, filesource.ResponderDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	fs, err := audit.OpenFileStore(filepath.Join(dir, filesource.AuditFile))
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return audit.NewLogger(fs, log, nil), nil
}

// ResponderSource is the Source a running responder answers its API's
// visibility questions from: ClickHouse through NewClickHouseSource in
// the distributed mode (nil, nil when it is not connected: the API then
// does not serve the questions), the embedded data dir otherwise, with
// the actions read from auditFile (the responder's own) and reloaded when
// older than filesource.DefaultMaxAge.
func ResponderSource(ctx context.Context, cfg config.Config, auditFile string, log *slog.Logger) (_ visibility.Source, closeFn func(), _ error) {
	if cfg.Distributed() {
		if NewClickHouseSource == nil {
			return nil, func() {}, nil
		}
		return NewClickHouseSource(ctx, cfg, log)
	}
	return filesource.NewLive(filesource.Options{DataDir: cfg.Embedded.DataDir, AuditFile: auditFile}, 0, nil), func() {}, nil
}
