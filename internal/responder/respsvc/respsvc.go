// Package respsvc assembles the running responder for either mode: the
// stores of the mode (ClickHouse's tables when kafka.brokers is set, files
// under responder.state_dir otherwise), the engine and outbox worker of
// package respond, the anomalies consumer, the agent registry watcher, the
// HTTP API and the metrics endpoint. cmd/responder runs what New builds,
// and the responder benchmark (internal/tools/respbench) measures the same
// thing. The stores a command run by hand opens (Stores, OpenAudit) live
// here too, so the mode's choice of stores is made in one place.
package respsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/invwatch"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/internal/platform/stall"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/internal/visibility/vissvc"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// auditGap is the least time between two audit inserts under load
// (audit.NewSpacedBatcher).
const auditGap = 500 * time.Millisecond

// Options change how New assembles the responder. The zero value is what
// `responder run` runs: the stores of cfg's mode, a consumer-group reader
// of the anomalies topic, the agent registry of detector.registry_file
// (watched), secrets from the environment.
type Options struct {
	// Log receives the responder's logs; nil discards them.
	Log *slog.Logger
	// Metrics is where the responder's metrics are registered and what
	// http.addr serves; nil means a private registry.
	Metrics *prometheus.Registry
	// Stores, when set, are used instead of opening those of cfg's mode
	// (ModeStores); the caller keeps and closes them. Their nil fields
	// fall back to files under responder.state_dir, as in respond.Build.
	Stores *respond.Deps
	// Reader, when set, is where anomalies come from; the caller keeps and
	// closes it, and the outbox and incidents stay in responder.state_dir
	// (one instance only). Otherwise, in the distributed mode, New joins
	// kafka.responder_group on kafka.anomalies_topic and keeps the outbox
	// and incidents per partition in kafka.responder_state_topic (creating
	// the topics first when kafka.create_topics), so several instances
	// share the work; in the embedded mode there is no consumer and the
	// caller hands anomalies to Service.Engine.
	Reader bus.Reader
	// Registry, when set, answers agent lookups. Otherwise a watcher of
	// detector.registry_file (invwatch.FromConfig) does, and runs as one
	// of the stages.
	Registry respond.Registry
	// Getenv reads the secrets' variables; nil means os.Getenv.
	Getenv func(string) string
	// WrapSeen, when set, wraps the shared handled set before the engine
	// gets it (the benchmark times it). It is not called when the outbox
	// file keeps the set (stores without Seen).
	WrapSeen func(outbox.Seen) outbox.Seen
	// AfterAction: see respond.Deps.AfterAction and Failpoint.
	AfterAction func(kind, key string)
	// BeforeAction: see respond.Deps.BeforeAction and Failpoints.
	BeforeAction func(kind, key string)
	// BeforeCommit: see respond.Consumer.BeforeCommit and Failpoints.
	BeforeCommit func()
	// StateMetrics, when set, counts what the state topics do; nil: New
	// registers them on Metrics in the distributed mode.
	StateMetrics *kstate.Metrics
	// Instance names this instance in the commands it forwards to others
	// (route.Options.Instance) and as the owner of the scheduled report's
	// lease; default host name and pid. Set it when several instances run
	// in one process (tests).
	Instance string
	// GlobalMux, when set, is the Mux the distributed mode's global table
	// applies its records through; the global rules register their
	// prefixes on it, beside whatever the caller registered. nil: a Mux of
	// their own.
	GlobalMux *kstate.Mux
}

// Responder is a built responder. Run it once, then Close it; Service and
// Consumer are there for callers that drive or inspect it (Consumer is
// nil when there is no reader). It is not safe for concurrent Runs.
type Responder struct {
	Service  *respond.Service
	Consumer *respond.Consumer
	// GroupConsumer and Ownership are set in the distributed mode when
	// New opened the anomalies topic itself: Ownership then says which
	// agents this instance acts for now.
	GroupConsumer *respond.GroupConsumer
	Ownership     respond.Ownership
	// Global is the distributed mode's global table and rules (nil in the
	// embedded mode, and when Options.Stores replace the mode's stores).
	Global *Global

	cfg config.Config
	log *slog.Logger
	// visSrc, visReg, visInv and visMetrics are what visibility opened,
	// shared with the web console (console.go).
	visOpened  bool
	visSrc     visibility.Source
	visReg     func() *inventory.Registry
	visInv     func() *inventory.Inventory
	visMetrics *visibility.Metrics
	stages     []pipeline.Stage
	closers    []func() error
}

// New builds the responder of cfg. ctx bounds only the opening of its
// stores and topic; Run takes the context it runs under. On error
// everything New opened is closed again.
func New(ctx context.Context, cfg config.Config, o Options) (_ *Responder, err error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	r := &Responder{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	openReader := o.Reader == nil && cfg.Distributed()
	instance := o.Instance
	if instance == "" {
		host, _ := os.Hostname()
		instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	var sec kafka.Security
	if openReader {
		if sec, err = kafka.Connect(ctx, cfg.Kafka, log); err != nil {
			return nil, err
		}
	}
	if openReader && cfg.Kafka.CreateTopics {
		if err := kafka.EnsureTopics(ctx, cfg.Kafka.Brokers, sec, kafka.TopicSpec{Name: cfg.Kafka.AnomaliesTopic, Partitions: cfg.Kafka.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor}); err != nil {
			return nil, fmt.Errorf("ensure anomalies topic: %w", err)
		}
	}
	var owner *partstate.Owner
	var router *route.Router
	var stalled *stall.Detector
	// One produce stream for this instance's state changelog and global
	// table: what both write while a request is out goes in the next one.
	// Made at its first use, so it is closed after both (closers run last
	// first). Each instance has its own, as each process would.
	var prod *kstate.Producer
	producer := func() (*kstate.Producer, error) {
		if prod != nil {
			return prod, nil
		}
		p, err := kstate.NewProducer(kstate.ProducerConfig{Brokers: cfg.Kafka.Brokers, Security: sec, Metrics: o.StateMetrics})
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, p.Close)
		prod = p
		return p, nil
	}
	if openReader {
		// A member that stands still past its session may have been
		// replaced: it then acts and writes nothing more and stops. The
		// limit leaves two heartbeats of margin below the session
		// timeout, since the last heartbeat may have gone out that long
		// before the stall began.
		stalled = stall.New(cfg.Responder.SessionTimeout-2*kafka.DefaultHeartbeatInterval, nil)
		r.stages = append(r.stages, stalled)
		if o.StateMetrics == nil {
			o.StateMetrics = kstate.NewMetrics(reg)
		}
		// Requests for agents another instance owns go to it through the
		// global table; this instance runs those for its own partitions
		// once their state is restored (route.Part, first of the parts,
		// so its commands end before the outbox is drained).
		if router, err = route.New(route.Options{Instance: instance, Log: log, Metrics: route.NewMetrics(reg)}); err != nil {
			return nil, err
		}
		p, err := producer()
		if err != nil {
			return nil, err
		}
		if owner, err = r.openState(ctx, cfg, sec, reg, o.StateMetrics, p, stalled.Check, route.Part{R: router}); err != nil {
			return nil, err
		}
	}
	var deps respond.Deps
	if o.Stores != nil {
		deps = *o.Stores
	} else {
		d, closeStores, err := ModeStores(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, func() error { closeStores(); return nil })
		deps = d
	}
	if o.Registry != nil {
		deps.Registry = o.Registry
	}
	var watcher *invwatch.Watcher
	if deps.Registry == nil {
		if watcher, err = invwatch.FromConfig(cfg, log, reg); err != nil {
			return nil, err
		}
		deps.Registry = respond.RegistryFunc(func() *inventory.Registry { return watcher.Current().Registry })
	}
	if o.Getenv != nil {
		deps.Getenv = o.Getenv
	}
	if deps.Seen != nil && o.WrapSeen != nil {
		deps.Seen = o.WrapSeen(deps.Seen)
	}
	if deps.Audit != nil {
		// Every action is audited before it counts as done; grouping the
		// concurrent ones into one insert keeps ClickHouse from drowning in
		// one-row inserts during a burst. An insert of the 19-column table
		// costs the server 10-30ms of CPU however few rows it holds (the
		// part written, then merged), so under load they start at most
		// every auditGap: two a second per instance whatever the rate of
		// actions, which wait up to auditGap more each (hence the
		// concurrency of the action kinds: see respond.Engine.Kinds).
		batcher := audit.NewSpacedBatcher(deps.Audit, 10*time.Millisecond, auditGap, 1000)
		r.closers = append(r.closers, batcher.Close)
		deps.Audit = batcher
	}
	if o.AfterAction != nil {
		deps.AfterAction = o.AfterAction
	}
	if o.BeforeAction != nil {
		deps.BeforeAction = o.BeforeAction
	}
	if stalled != nil {
		deps.Fence = stalled.Check
	}
	deps.Owner = owner
	// Stores brought by the caller replace every store of the mode, the
	// global table's too (their nil Global means files).
	if cfg.Distributed() && o.Stores == nil {
		if !openReader {
			if sec, err = kafka.Connect(ctx, cfg.Kafka, log); err != nil {
				return nil, err
			}
		}
		if o.StateMetrics == nil {
			o.StateMetrics = kstate.NewMetrics(reg)
		}
		mux := o.GlobalMux
		if mux == nil {
			mux = kstate.NewMux()
		}
		if router != nil {
			router.Register(mux)
		}
		// Several instances append to one evidence chain: the global
		// table's order places each record, so the chain cannot fork.
		var seqChain *evidence.SequencedChain
		if m, ok := deps.Chain.(evidence.Mirror); ok {
			seqChain = evidence.NewSequencedChain(m, log.With("component", "evidence-chain"))
			mux.Handle(evidence.SequencedKeyPrefix, seqChain.Apply)
		}
		var fence func() error
		if stalled != nil {
			fence = stalled.Check
		}
		p, err := producer()
		if err != nil {
			return nil, err
		}
		g, err := OpenGlobal(ctx, cfg, sec, log, reg, o.StateMetrics, mux, fence, p)
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, g.Close)
		r.Global, deps.Global = g, g.Rules
		// Deletes the budget claims no verdict depends on any more, so the
		// table does not grow with every revocation.
		r.stages = append(r.stages, g.Rules)
		if router != nil {
			deps.Router, deps.Commands, deps.Owners = router, g.Table, owner
		}
		if seqChain != nil {
			seqChain.Attach(g.Table)
			deps.Chain = seqChain
			r.stages = append(r.stages, seqChain)
		}
	}
	if deps.Visibility == nil && len(cfg.Responder.Tokens) > 0 {
		if deps.Visibility, err = r.visibility(ctx, cfg, watcher, log, reg); err != nil {
			return nil, err
		}
	}
	if deps.WebConsole.Source == nil && cfg.Console.Enabled {
		if deps.WebConsole, err = r.console(ctx, cfg, watcher, log, reg); err != nil {
			return nil, err
		}
	}
	svc, err := respond.Build(cfg, deps, log, reg)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, svc.Close)
	r.Service = svc
	if openReader {
		// The group's partitions are this instance's agents: it restores
		// their state when given them and hands it over when they go.
		g, err := kafka.NewGroup(kafka.GroupConfig{Brokers: cfg.Kafka.Brokers, Security: sec, GroupID: cfg.Kafka.ResponderGroup,
			Topic: cfg.Kafka.AnomaliesTopic, SessionTimeout: cfg.Responder.SessionTimeout, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("anomalies consumer group: %w", err)
		}
		r.closers = append(r.closers, g.Close)
		invalid, lag := respond.NewConsumerMetrics(reg)
		r.GroupConsumer = &respond.GroupConsumer{Group: g, Owner: owner, Engine: svc.Engine, Log: log, Invalid: invalid, InputLag: lag, BeforeCommit: o.BeforeCommit}
		r.Ownership = owner
		handedOver := make(chan struct{})
		r.stages = append(r.stages, pipeline.StageFunc(func(ctx context.Context) error {
			defer close(handedOver)
			return r.GroupConsumer.Run(ctx)
		}), pipeline.StageFunc(func(ctx context.Context) error {
			return owner.RunCompaction(ctx, time.Hour)
		}), pipeline.StageFunc(func(ctx context.Context) error {
			return runAfterHandOver(ctx, svc, handedOver)
		}))
	} else {
		if o.Reader != nil {
			invalid, lag := respond.NewConsumerMetrics(reg)
			r.Consumer = &respond.Consumer{Reader: o.Reader, Engine: svc.Engine, Log: log, Invalid: invalid, InputLag: lag, BeforeCommit: o.BeforeCommit}
			r.stages = append(r.stages, r.Consumer)
		}
		r.stages = append(r.stages, svc)
	}
	if watcher != nil {
		r.stages = append(r.stages, watcher)
	}
	rs, err := r.reportScheduler(ctx, cfg, svc, instance, log, reg)
	if err != nil {
		return nil, fmt.Errorf("report.schedule: %w", err)
	}
	if rs != nil {
		r.stages = append(r.stages, rs)
	}
	r.stages = append(r.stages,
		&respond.HTTPServer{Addr: cfg.Responder.APIAddr, WebConfigFile: cfg.Responder.APIWebConfigFile, Handler: svc.Handler, Log: log},
		&obs.Server{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile, Registry: reg, Readiness: &obs.Readiness{}, Log: log})
	return r, nil
}

// runAfterHandOver runs svc (its outbox Worker) until the group consumer
// has handed its partitions over (handedOver closed), not merely until
// ctx ends: at a stop the hand-over waits for the actions running, so
// they finish and are recorded instead of being cut short and run again,
// Recovered, by the next owner. If the hand-over hangs, the Worker is
// stopped anyway a little after its timeout.
func runAfterHandOver(ctx context.Context, svc *respond.Service, handedOver <-chan struct{}) error {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-handedOver:
		case <-sctx.Done():
			return
		}
		cancel()
	}()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(respond.DefaultHandOverTimeout + 5*time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sctx.Done():
		}
		cancel()
	})
	defer stop()
	return svc.Run(sctx)
}

// openState creates the state changelog when kafka.create_topics (as many
// partitions as the anomalies topic, compacted), opens it and returns the
// Owner of its partitions; the changelog is closed with r. It writes
// through prod (nil: a stream of its own).
func (r *Responder) openState(ctx context.Context, cfg config.Config, sec kafka.Security, reg prometheus.Registerer, sm *kstate.Metrics, prod *kstate.Producer, fence func() error, parts ...partstate.Part) (*partstate.Owner, error) {
	n, err := kstate.PartitionCount(ctx, cfg.Kafka.Brokers, sec, cfg.Kafka.AnomaliesTopic)
	if err != nil {
		return nil, fmt.Errorf("anomalies topic: %w", err)
	}
	topic := cfg.Kafka.ResponderStateTopic
	if cfg.Kafka.CreateTopics {
		spec := kstate.Spec(topic, n)
		spec.ReplicationFactor = cfg.Kafka.ReplicationFactor
		if err := kafka.EnsureTopics(ctx, cfg.Kafka.Brokers, sec, spec); err != nil {
			return nil, fmt.Errorf("ensure kafka.responder_state_topic: %w", err)
		}
	}
	cl, err := kstate.OpenChangelog(ctx, kstate.Config{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: topic, Log: r.log, Metrics: sm, Fence: fence, Producer: prod})
	if err != nil {
		return nil, fmt.Errorf("kafka.responder_state_topic: %w", err)
	}
	r.closers = append(r.closers, cl.Close)
	if cl.Partitions() != n {
		return nil, fmt.Errorf("kafka.responder_state_topic %s has %d partitions and kafka.anomalies_topic %s has %d: they must match, "+
			"because partition p of the state belongs to the owner of anomalies partition p; add partitions to the state topic (or recreate it empty)",
			topic, cl.Partitions(), cfg.Kafka.AnomaliesTopic, n)
	}
	owner := partstate.NewOwner(cl, r.log, parts...)
	owner.Metrics = partstate.NewMetrics(reg)
	return owner, nil
}

// Run runs the consumer, the outbox worker, the registry watcher, the API
// and the metrics endpoint until ctx ends (nil) or one of them fails (its
// error), as pipeline.Run does.
func (r *Responder) Run(ctx context.Context) error {
	r.log.Info("responder started", "brokers", r.cfg.Kafka.Brokers, "anomalies_topic", r.cfg.Kafka.AnomaliesTopic, "group", r.cfg.Kafka.ResponderGroup,
		"playbooks", r.cfg.Responder.Playbooks, "api", r.cfg.Responder.APIAddr, "state_dir", r.cfg.Responder.StateDir)
	return pipeline.Run(ctx, r.stages...)
}

// Close releases what New opened, the last opened first: not Options'
// Stores and Reader, which belong to the caller.
func (r *Responder) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	r.closers = nil
	return errors.Join(errs...)
}

// Failpoint is Failpoints' AfterAction.
func Failpoint(log *slog.Logger) func(kind, key string) { return Failpoints(log).AfterAction }

// FailpointHooks are the places a crash test can stop a responder.
type FailpointHooks struct {
	BeforeAction, AfterAction func(kind, key string)
	BeforeCommit              func()
}

// Failpoints reads RESPONDER_FAILPOINT, for the crash tests only. Each
// form names a point and a marker FILE; the first process to reach the
// point creates FILE (its pid, a newline, the outbox key) and hangs there,
// so the test can SIGKILL it in that gap. The point fires once across
// every process given the same FILE: one that finds FILE already there
// goes on, so the survivors of a multi-process test do not hang at the
// same point.
//
//   - "pause-before-revoke:FILE": a revocation or quarantine marked in
//     flight, not yet sent to the gateway;
//   - "pause-after-revoke:FILE": a revocation or quarantine that reached
//     the gateway, not yet recorded;
//   - "pause-after-post:FILE": an alert posted to Slack, not yet
//     recorded;
//   - "pause-before-commit:FILE": anomalies handled and their actions
//     queued (and maybe done and recorded), before they are marked
//     handled and their offsets committed;
//   - "hold-before-revoke:FILE": as pause-before-revoke, but it goes on
//     once FILE is removed (a test stops the process there, lets the
//     group replace it, then resumes it).
//
// Unset, every hook is nil (no failpoint).
func Failpoints(log *slog.Logger) FailpointHooks {
	point, file, ok := strings.Cut(os.Getenv("RESPONDER_FAILPOINT"), ":")
	if !ok || file == "" {
		return FailpointHooks{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var once sync.Once
	hold := point == "hold-before-revoke"
	pause := func(what string) {
		once.Do(func() {
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return // another process reached the point first
			}
			_, _ = fmt.Fprintf(f, "%d\n%s", os.Getpid(), what)
			_ = f.Close()
			if !hold {
				select {}
			}
			for {
				if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	onKinds := func(kinds ...string) func(kind, key string) {
		return func(kind, key string) {
			if slices.Contains(kinds, kind) {
				pause(key)
			}
		}
	}
	var h FailpointHooks
	switch point {
	case "pause-before-revoke", "hold-before-revoke":
		h.BeforeAction = onKinds("revoke", "quarantine")
	case "pause-after-revoke":
		h.AfterAction = onKinds("revoke", "quarantine")
	case "pause-after-post":
		h.AfterAction = onKinds("notify")
	case "pause-before-commit":
		h.BeforeCommit = func() { pause("commit") }
	default:
		log.Error("RESPONDER_FAILPOINT names no known point; none armed", "point", point)
		return FailpointHooks{}
	}
	log.Warn("failpoint armed: the first process to reach it hangs there", "point", point, "marker", file)
	return h
}

// visibility builds the API's visibility questions on the mode's Source
// (vissvc.ResponderSource), with the registry and route inventory of the
// watcher (or read once from the files when there is none).
func (r *Responder) visibility(ctx context.Context, cfg config.Config, watcher *invwatch.Watcher, log *slog.Logger, reg prometheus.Registerer) (func(*audit.Logger) respapi.Visibility, error) {
	src, closeSrc, err := vissvc.ResponderSource(ctx, cfg, filepath.Join(cfg.Responder.StateDir, respond.AuditFile), log)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, func() error { closeSrc(); return nil })
	r.visOpened, r.visSrc = true, src
	regFn := func() *inventory.Registry { return watcher.Current().Registry }
	invFn := func() *inventory.Inventory { return watcher.Current().Routes }
	if watcher == nil {
		reg, inv, err := filesource.Fleet(cfg.Embedded.DataDir, cfg.Detector.RegistryFile, cfg.Detector.RoutesFile, cfg.Detector.OpenAPIFile)
		if err != nil {
			return nil, err
		}
		regFn = func() *inventory.Registry { return reg }
		invFn = func() *inventory.Inventory { return inv }
	}
	r.visReg, r.visInv = regFn, invFn
	metrics := visibility.NewMetrics(reg)
	r.visMetrics = metrics
	return func(trail *audit.Logger) respapi.Visibility {
		svc := visibility.New(src, regFn, invFn, trail, visibility.Config{}, nil)
		svc.SetMetrics(metrics)
		return svc
	}, nil
}
