// Package inventory loads the agent registry and route inventory files
// (see pkg/inventory and docs/registry.md) and reloads them when they
// change, so the detector's rule checks always read a complete, valid
// snapshot without locks.
package invwatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// DefaultInterval is how often Run polls the files when NewWatcher is
// given no interval.
const DefaultInterval = 5 * time.Second

// MaxFileBytes bounds a file's size; a larger one is an error.
const MaxFileBytes = 64 << 20

// racyWindow is how long after a file's mtime its stat cannot be trusted
// to show a further write: file systems with coarse timestamps give a
// quick second write the same mtime (git's "racy clean" problem). Files
// read within this window are read again on the next poll.
const racyWindow = 2 * time.Second

// Files names the files to load. Each is optional: "" means not
// configured.
type Files struct {
	// Registry is the agent registry. Without it the shadow-agent and
	// unapproved-route rules are off.
	Registry string
	// Routes is the route inventory file.
	Routes string
	// OpenAPI is an OpenAPI 3 document whose paths are imported into the
	// route inventory (merged after Routes, which wins on services and
	// template spelling). Without Routes and OpenAPI the zombie-API and
	// sensitive-route rules never fire.
	OpenAPI string
}

// Snapshot is one consistent view of the files. It is immutable and safe
// for concurrent reads.
type Snapshot struct {
	// Registry is never nil; it is not Enabled when no registry file is
	// configured.
	Registry *inventory.Registry
	// Routes merges the routes file and the OpenAPI import; never nil, and
	// not Enabled when neither is configured.
	Routes *inventory.Inventory
	// LoadedAt is when this snapshot was built.
	LoadedAt time.Time
}

// The file label values of the metrics.
const (
	fileRegistry = "registry"
	fileRoutes   = "routes"
	fileOpenAPI  = "openapi"
)

// Watcher holds the current Snapshot and, in Run, reloads it when a file
// changes. Current is safe for concurrent use; Run must not be called
// twice at once.
type Watcher struct {
	interval time.Duration
	log      *slog.Logger
	m        *metrics
	cur      atomic.Pointer[Snapshot]

	// Owned by NewWatcher, then by Run.
	files  []*file
	reg    *inventory.Registry
	routes *inventory.Inventory
	api    *inventory.Inventory
}

var _ pipeline.Stage = (*Watcher)(nil)

// file is what the watcher remembers of one configured file.
type file struct {
	kind, path string
	// Stat of the last read, and when that read happened.
	size   int64
	mtime  time.Time
	readAt time.Time
	// Hashes of the content in use, of new content seen once and waiting
	// to be seen unchanged, and of the last content that failed to parse.
	loaded, pending, failed [sha256.Size]byte
	// missing is set while the file cannot be read, so that is logged once.
	missing bool
}

// NewWatcher loads files once and returns a Watcher serving them. A file
// that is configured but cannot be read or parsed is an error naming it:
// start-up fails fast rather than running with rules silently off.
// interval <= 0 means DefaultInterval. log may be nil (no logging);
// metrics are registered on reg, which may be nil.
func NewWatcher(files Files, interval time.Duration, log *slog.Logger, reg prometheus.Registerer) (*Watcher, error) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{interval: interval, log: log, m: newMetrics(reg)}
	var errs []error
	for _, f := range []*file{
		{kind: fileRegistry, path: files.Registry},
		{kind: fileRoutes, path: files.Routes},
		{kind: fileOpenAPI, path: files.OpenAPI},
	} {
		if f.path == "" {
			continue
		}
		w.files = append(w.files, f)
		w.m.reloads.WithLabelValues(f.kind)
		w.m.errors.WithLabelValues(f.kind)
		data, err := f.read(time.Now())
		if err == nil {
			err = w.parse(f, data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s file (detector.%s_file): %w", f.kind, f.kind, err))
			continue
		}
		f.loaded = sha256.Sum256(data)
		w.m.reloads.WithLabelValues(f.kind).Inc()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	w.publish(time.Now())
	return w, nil
}

// Current returns the snapshot in use: never nil, never partly loaded.
// It is one atomic load.
func (w *Watcher) Current() *Snapshot { return w.cur.Load() }

// Run implements pipeline.Stage. Every interval it checks each configured
// file (size and mtime, then a content hash when those changed or cannot
// be trusted) and reloads it once new content has been seen unchanged on
// two polls in a row, so a file caught half-written is not loaded. A file
// that fails to parse, or disappears, is logged and counted, and the
// previous snapshot stays in use. Run returns nil when ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	if len(w.files) == 0 {
		<-ctx.Done() // nothing to watch; still a stage like any other
		return nil
	}
	// The common ticker-and-select loop, alike in shape to other stages'
	// (demo's progress): only the loop is shared, not what it does.
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			w.poll(now)
		}
	}
}

// poll checks every file once and publishes a new snapshot if any was
// reloaded.
func (w *Watcher) poll(now time.Time) {
	changed := false
	for _, f := range w.files {
		if w.check(f, now) {
			changed = true
		}
	}
	if changed {
		w.publish(now)
	}
}

// check looks at f and reloads it when its new content has settled. It
// reports whether f was reloaded.
func (w *Watcher) check(f *file, now time.Time) bool {
	log := w.log.With("file", f.kind, "path", f.path)
	// unreadable counts and logs the first failure of a run of them.
	unreadable := func(err error) bool {
		if !f.missing {
			f.missing = true
			w.m.errors.WithLabelValues(f.kind).Inc()
			log.Error("inventory file unreadable; keeping the previous version", "err", err)
		}
		return false
	}
	st, err := os.Stat(f.path)
	if err != nil {
		return unreadable(err)
	}
	var zero [sha256.Size]byte
	sameStat := st.Size() == f.size && st.ModTime().Equal(f.mtime)
	racy := f.readAt.Sub(f.mtime) < racyWindow
	if sameStat && !racy && f.pending == zero && !f.missing {
		return false
	}
	data, err := f.read(now)
	if err != nil {
		return unreadable(err)
	}
	if f.missing {
		f.missing = false
		log.Info("inventory file readable again")
	}
	sum := sha256.Sum256(data)
	switch {
	case sum == f.loaded:
		f.pending = zero // changed back, or only touched
		return false
	case sum == f.failed:
		f.pending = zero // already reported
		return false
	case sum != f.pending:
		f.pending = sum // new: load it if it is still the same next poll
		return false
	}
	f.pending = zero
	if err := w.parse(f, data); err != nil {
		f.failed = sum
		w.m.errors.WithLabelValues(f.kind).Inc()
		log.Error("inventory file rejected; keeping the previous version", "err", err)
		return false
	}
	f.loaded = sum
	w.m.reloads.WithLabelValues(f.kind).Inc()
	return true
}

// read reads f's content and remembers its stat.
func (f *file) read(now time.Time) ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: %w: is a directory", f.path, fs.ErrInvalid)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(fh, MaxFileBytes+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.path, err)
	}
	if buf.Len() > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB; split it or trim it", f.path, MaxFileBytes>>20)
	}
	f.size, f.mtime, f.readAt = st.Size(), st.ModTime(), now
	return buf.Bytes(), nil
}

// parse parses data as f's kind and keeps the result for publish.
func (w *Watcher) parse(f *file, data []byte) error {
	switch f.kind {
	case fileRegistry:
		r, err := inventory.ParseRegistry(f.path, data)
		if err != nil {
			return err
		}
		w.reg = r
	case fileRoutes:
		inv, err := inventory.ParseRoutes(f.path, data)
		if err != nil {
			return err
		}
		w.routes = inv
	case fileOpenAPI:
		inv, err := inventory.FromOpenAPI(f.path, data)
		if err != nil {
			return err
		}
		w.api = inv
	}
	return nil
}

// publish builds a snapshot from the files' latest good versions and makes
// it current.
func (w *Watcher) publish(now time.Time) {
	s := &Snapshot{Registry: w.reg, Routes: inventory.Merge(w.routes, w.api), LoadedAt: now}
	if s.Registry == nil {
		s.Registry = inventory.EmptyRegistry()
	}
	w.cur.Store(s)
	w.m.agents.Set(float64(s.Registry.Len()))
	w.m.routes.Set(float64(s.Routes.Len()))
	w.m.loadedAt.Set(float64(now.UnixNano()) / 1e9)
	attrs := []any{
		"agents", s.Registry.Len(), "routes", s.Routes.Len(),
		"registry_enabled", s.Registry.Enabled(), "routes_enabled", s.Routes.Enabled(),
	}
	w.log.Info("inventory loaded", attrs...)
	if unknown := s.Registry.UnknownRoutes(s.Routes); len(unknown) > 0 {
		w.log.Warn("approved routes missing from the route inventory; fix the typo or add the route",
			"count", len(unknown), "routes", unknown[:min(len(unknown), 10)])
	}
}

type metrics struct {
	reloads, errors *prometheus.CounterVec
	agents, routes  prometheus.Gauge
	loadedAt        prometheus.Gauge
}

// newMetrics registers the watcher's series. Deliberately parallel to the
// other packages' NewMetrics (STYLE.md): alike in shape, each names its own
// series, so nothing is shared.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "inventory", Name: "reloads_total",
			Help: "Successful loads of an inventory file (registry, routes, openapi), the first one included.",
		}, []string{"file"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "inventory", Name: "reload_errors_total",
			Help: "Changed inventory file versions rejected (bad content) or found unreadable; the previous version stays in use.",
		}, []string{"file"}),
		agents: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentwatch", Subsystem: "inventory", Name: "agents",
			Help: "Agents in the registry in use.",
		}),
		routes: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentwatch", Subsystem: "inventory", Name: "routes",
			Help: "Routes in the route inventory in use (routes file and OpenAPI merged).",
		}),
		loadedAt: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentwatch", Subsystem: "inventory", Name: "last_reload_timestamp_seconds",
			Help: "When the snapshot in use was built, in Unix seconds.",
		}),
	}
}
