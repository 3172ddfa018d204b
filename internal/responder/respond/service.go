package respond

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/playbookcfg"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// The files of responder.state_dir. One process at a time owns the outbox,
// the silences and the incident log; the others are safe to share with a
// command run by hand.
const (
	OutboxFile    = "outbox.jsonl"
	AuditFile     = "audit.jsonl" // when not in ClickHouse
	ChainFile     = "evidence-chain.jsonl"
	SilencesFile  = "silences.jsonl"
	LedgerFile    = "revocations.jsonl"
	IncidentsFile = "incidents.json"
)

// Deps are what the mode provides: ClickHouse-backed stores in the
// distributed mode; nil fields fall back to files under the state
// directory (the embedded mode and tests).
type Deps struct {
	Seen     outbox.Seen
	Audit    audit.Store
	Chain    evidence.ChainStore
	Events   evidence.EventSource
	Scores   ScoreSource
	Feedback FeedbackSink
	Registry Registry
	// Visibility, when set, builds what answers the visibility questions
	// of the HTTP API (tokens with can_read_inventory), given the audit
	// trail the questions are written to.
	Visibility func(trail *audit.Logger) respapi.Visibility
	// Console receives alerts when no Slack token is set; nil discards.
	Console io.Writer
	// WrapNotifier, when set, is given the notifier Build chose (Slack or
	// the console) and returns the one the engine posts through: the demo
	// and responder preview wrap it to keep what was posted. The wrapper
	// hides the optional interfaces (PostFinder, Ephemeral) it does not
	// implement itself.
	WrapNotifier func(Notifier) Notifier
	// Getenv reads the secrets' variables; nil means os.Getenv.
	Getenv func(string) string
	// Resolve replaces DNS for the egress guard (tests).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	Now     func() time.Time
	// Set, when not empty, replaces the playbook files (tests).
	Set playbooks.Set
	// AfterAction: see Options.AfterAction.
	AfterAction func(kind, key string)
	// BeforeAction: see Options.BeforeAction.
	BeforeAction func(kind, key string)
	// Fence: see Options.Fence.
	Fence func() error
	// Owner, in the distributed mode, keeps the outbox and the incidents
	// per anomaly partition in its changelog instead of the state
	// directory's files; Seen is then required. The caller assigns and
	// revokes its partitions (the group consumer does).
	Owner *partstate.Owner
	// Global, in the distributed mode, holds the silences, the kill
	// switch, the budget claims and the revocation ledger in the global
	// table, shared by every instance; nil keeps them in files under the
	// state directory. The caller owns it (and the table behind it).
	Global *global.Rules
	// Router, Commands and Owners, all set, are for several responders
	// sharing the anomalies' partitions: a Slack click or an API request
	// (run-playbook, false positive) for an agent another instance owns
	// goes to it as a command in the global table (package route). The
	// caller feeds the Router the table's records under route.Prefix (from
	// the table's opening on), and its consumer calls the Router's
	// OnAssigned and OnRevoked; Build binds the engine to it and Run runs
	// it. Nil: every request runs here (one responder).
	Router   *route.Router
	Commands route.Table
	Owners   route.Ownership
	// WebConsole is what the web console reads (console.enabled).
	WebConsole ConsoleDeps
}

// Service is a built responder: the Engine, the outbox Worker that runs
// its actions, and the HTTP handler of the API and Slack's interactivity
// endpoint.
type Service struct {
	Engine   *Engine
	Worker   *outbox.Worker
	Handler  http.Handler
	Console  *Console
	Ledger   *revoke.FileLedger
	Audit    *audit.Logger
	Chain    evidence.ChainStore
	Evidence string
	closers  []func() error
	silences *silence.Store
	limiters []*clientlimit.Limiter
	// mirror keeps the deny-list file in step with the shared ledger (the
	// distributed mode); nil otherwise.
	mirror func(ctx context.Context)
	router *route.Router
	// console, when served, keeps its overview computed while Run runs.
	console *console.Handler

	// Checkpoints signs the evidence chain's head; nil without
	// responder.evidence.checkpoint_key_file.
	Checkpoints *evidence.Checkpointer
}

// Build assembles the responder from cfg.Responder and d.
func Build(cfg config.Config, d Deps, log *slog.Logger, reg prometheus.Registerer) (_ *Service, err error) {
	rc := cfg.Responder
	getenv := d.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	set := d.Set
	if len(set.Playbooks) == 0 {
		if set, err = playbookcfg.LoadOrBuiltin(rc.Playbooks); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(rc.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("responder state dir: %w", err)
	}
	state := func(name string) string { return filepath.Join(rc.StateDir, name) }
	var ob outbox.Store
	seen := d.Seen
	// The state directory's outbox file is opened in both modes: it holds
	// the directory's lock, which tells a command run by hand that a
	// responder runs here (it then goes through its API).
	fs, err := outbox.OpenFile(state(OutboxFile), outbox.FileOptions{Log: log})
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	s.closers = append(s.closers, fs.Close)
	if d.Owner != nil {
		if seen == nil {
			return nil, errors.New("respond: the distributed outbox needs a shared handled set (Deps.Seen)")
		}
		if open, err := fs.List(context.Background(), outbox.StatePending, outbox.StateInFlight, outbox.StateParked); err == nil && len(open) > 0 && log != nil {
			log.Warn("the state directory's outbox file holds open entries that this responder does not run: the distributed mode keeps its outbox in kafka.responder_state_topic; "+
				"act on them by hand, then move the file aside", "path", state(OutboxFile), "entries", len(open))
		}
		ps := outbox.NewPartStore(d.Owner.Changelog(), outbox.PartOptions{Log: log})
		d.Owner.Add(ps) // first: revoking drains its entries before the incidents go
		ob = ps
	} else {
		ob = fs
		if seen == nil {
			seen = fs
		}
	}
	ast := d.Audit
	if ast == nil {
		fs, err := audit.OpenFileStore(state(AuditFile))
		if err != nil {
			return nil, err
		}
		ast = fs
	}
	s.Audit = audit.NewLogger(ast, log, now)
	s.Chain = d.Chain
	if s.Chain == nil {
		fc, err := evidence.OpenFileChain(state(ChainFile))
		if err != nil {
			return nil, err
		}
		s.Chain = fc
	}
	s.Evidence = rc.EvidenceRoot()
	em := evidence.NewMetrics(reg)
	elog := log
	if elog == nil {
		elog = slog.New(slog.DiscardHandler)
	}
	if paths, n, err := evidence.OpenModes(s.Evidence, 5); err != nil {
		elog.Warn("cannot check the evidence modes", "err", err)
	} else if n > 0 {
		em.OpenModePaths.Set(float64(n))
		elog.Error("evidence readable by other users", "err", evidence.OpenModesError(s.Evidence, paths, n))
	}
	if kf := rc.Evidence.CheckpointKeyFile; kf != "" {
		key, err := evidence.LoadPrivateKey(kf)
		if err != nil {
			return nil, fmt.Errorf("responder.evidence.checkpoint_key_file: %w", err)
		}
		s.Checkpoints, err = evidence.NewCheckpointer(evidence.CheckpointerOptions{Chain: s.Chain, Audit: s.Audit, Key: key,
			Every: int64(rc.Evidence.CheckpointEvery), Interval: rc.Evidence.CheckpointInterval, Now: now, Log: elog.With("component", "checkpoint"), Metrics: em})
		if err != nil {
			return nil, err
		}
	}
	var sil *silence.Store
	var ledger revoke.Ledger
	if d.Global != nil {
		sil, ledger = d.Global.Silences, d.Global.Ledger
	} else {
		if sil, err = silence.Open(state(SilencesFile), silence.Options{Log: log, Now: now, Metrics: silence.NewMetrics(reg)}); err != nil {
			return nil, fmt.Errorf("open silences: %w", err)
		}
		s.closers = append(s.closers, sil.Close)
		if s.Ledger, err = openLedger(rc, elog); err != nil {
			return nil, err
		}
		ledger = s.Ledger
	}
	s.silences = sil
	var gx gatewayExtras
	guards, webhooks, throttlers, err := buildGateways(cfg, set, ledger, d.Global, &gx, getenv, d.Resolve, now, log, reg)
	if err != nil {
		return nil, err
	}
	if d.Global != nil {
		s.mirror = func(ctx context.Context) { d.Global.MirrorDenylist(ctx, gx.denylist, "denylist", elog, 5*time.Second) }
	}
	var notifier Notifier
	var groups *slackui.Groups
	var codec *slackui.ActionCodec
	slackMetrics := slackui.NewMetrics(reg)
	secret, err := secretOf(getenv, rc.Slack.SigningSecret, "responder.slack.signing_secret", "responder.slack.signing_secret_env", rc.Slack.SigningSecretEnv)
	if err != nil {
		return nil, err
	}
	if secret != "" {
		if codec, err = slackui.NewActionCodec(secret); err != nil {
			return nil, fmt.Errorf("responder.slack.signing_secret: %w", err)
		}
	}
	token, err := secretOf(getenv, rc.Slack.Token, "responder.slack.token", "responder.slack.token_env", rc.Slack.TokenEnv)
	if err != nil {
		return nil, err
	}
	if token != "" {
		// Its own client: Go's default keeps 2 idle connections per host,
		// so 32 concurrent posts (slackKind) would open and close a TLS
		// connection to Slack per message.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 64, 32
		opts := []slack.Option{slack.OptionHTTPClient(&http.Client{Transport: tr, Timeout: 30 * time.Second})}
		if rc.Slack.APIURL != "" {
			opts = append(opts, slack.OptionAPIURL(strings.TrimSuffix(rc.Slack.APIURL, "/")+"/"))
		}
		client := slack.New(token, opts...)
		p := slackui.NewPoster(client)
		p.Metrics = slackMetrics
		notifier = p
		groups = slackui.NewGroups(func(ctx context.Context, g string) ([]string, error) {
			return client.GetUserGroupMembersContext(ctx, g)
		}, rc.Slack.GroupCacheTTL, now)
	} else {
		w := d.Console
		if w == nil {
			w = io.Discard
		}
		s.Console = NewConsole(w)
		notifier = s.Console
	}
	if d.WrapNotifier != nil {
		notifier = d.WrapNotifier(notifier)
	}
	maxPerMinute := rc.Slack.MaxMessagesPerMinute
	if s.Console != nil {
		maxPerMinute = 0 // the cap is Slack's; the console takes everything
	}
	button := "denylist"
	if _, ok := guards["kong"]; ok {
		button = "kong"
	}
	m := NewMetrics(reg)
	e, err := New(Options{
		Set: set, Outbox: ob, Seen: seen, Audit: s.Audit, Silences: sil, Registry: d.Registry, Notifier: notifier, Codec: codec, Groups: groups,
		Guards: guards, Throttlers: throttlers, Webhooks: webhooks, Events: d.Events, Chain: s.Chain, Evidence: s.Evidence, Checkpoints: s.Checkpoints, Scores: d.Scores, Feedback: d.Feedback,
		Incidents: state(IncidentsFile), Owner: d.Owner, Ledger: ledger, Log: log, Now: now, Metrics: m, AfterAction: d.AfterAction, BeforeAction: d.BeforeAction, Fence: d.Fence,
		Settings: Settings{GroupWait: rc.GroupWait, ActionWait: rc.ActionWait, IncidentWindow: rc.IncidentWindow, RepeatInterval: rc.RepeatInterval,
			FalsePositiveSuppress: rc.FalsePositiveSuppress, Snooze: rc.Snooze, SnapshotMaxEvents: rc.SnapshotMaxEvents, ButtonAdapter: button,
			ApprovalChannel: rc.Slack.ApprovalChannel, Responders: rc.Slack.Responders,
			MaxMessagesPerMinute: maxPerMinute, ApprovalGroupWindow: rc.Slack.ApprovalGroupWindow, DigestInterval: rc.Slack.DigestInterval},
	})
	if err != nil {
		return nil, err
	}
	s.Engine = e
	s.closers = append(s.closers, e.inc.Close)
	s.Worker = &outbox.Worker{Store: ob, Kinds: e.Kinds(), Log: log, Metrics: outbox.NewMetrics(reg), Poll: 250 * time.Millisecond, Now: now}
	mux := http.NewServeMux()
	lm := clientlimit.NewMetrics(reg)
	limiter := func(endpoint string) *clientlimit.Limiter {
		l := clientlimit.New(clientlimit.Options{Endpoint: endpoint, Rate: rc.RateLimit.Rate, Burst: rc.RateLimit.Burst,
			SampleInterval: rc.RateLimit.SampleInterval, Audit: s.Audit, Log: log, Metrics: lm, Now: now})
		s.limiters = append(s.limiters, l)
		return l
	}
	var runner respapi.Runner = e
	var verdicts respapi.Verdicts = e
	var repairs respapi.Outbox = e
	if d.Router != nil && d.Commands != nil && d.Owners != nil {
		if err := d.Router.Bind(route.Deps{Table: d.Commands, Owners: d.Owners, Exec: e, Seen: seen}); err != nil {
			return nil, err
		}
		s.router = d.Router
		runner, verdicts = routedRunner{e, d.Router}, routedVerdicts{e, d.Router}
		if d.Owner != nil {
			repairs = routedOutbox{e: e, r: d.Router, cl: d.Owner.Changelog()}
		}
	}
	if secret != "" {
		ih := slackui.NewInteractionHandler(secret, seenDeduper{seen}, nil, e.OnClick)
		ih.Log, ih.Metrics, ih.Limit = log, slackMetrics, limiter("slack")
		if s.router != nil {
			ih.Route = routeClick(s.router)
		}
		mux.Handle("POST /slack/interactions", ih)
	}
	if len(rc.Tokens) > 0 {
		var toks []respapi.Token
		for _, t := range rc.Tokens {
			toks = append(toks, respapi.Token{Name: t.Name, SHA256: t.SHA256, SecretEnv: t.SecretEnv, SecretFile: t.SecretFile, AllowedPlaybooks: t.AllowedPlaybooks, CanReadAudit: t.CanReadAudit, CanSilence: t.CanSilence,
				CanReadDenylist: t.CanReadDenylist, CanKillSwitch: t.CanKillSwitch, CanRepairOutbox: t.CanRepairOutbox, CanReadInventory: t.CanReadInventory})
		}
		ao := respapi.Options{Tokens: toks, Runner: runner, Audit: s.Audit, Silences: sil, Verdicts: verdicts, Outbox: repairs, Log: log, Metrics: respapi.NewMetrics(reg), Now: now, Getenv: getenv,
			Limit: limiter("api"), Denylist: denylistSource{rules: d.Global, file: gx.denylist}}
		if d.Visibility != nil {
			ao.Visibility = d.Visibility(s.Audit)
		}
		if d.Global != nil {
			ao.KillSwitch = apiSwitch{TableSwitch: d.Global.Switch, any: gx.kill}
		}
		api, err := respapi.New(ao)
		if err != nil {
			return nil, fmt.Errorf("responder.tokens: %w", err)
		}
		mux.Handle("/v1/", api)
	}
	var consoleToks []respapi.Token
	for _, t := range rc.Tokens {
		consoleToks = append(consoleToks, respapi.Token{Name: t.Name, SHA256: t.SHA256, SecretEnv: t.SecretEnv, SecretFile: t.SecretFile, AllowedPlaybooks: t.AllowedPlaybooks,
			CanReadAudit: t.CanReadAudit, CanSilence: t.CanSilence, CanReadInventory: t.CanReadInventory})
	}
	ch, err := buildConsole(cfg, d, s, sil, verdicts, consoleToks, getenv, now, log, limiter)
	if err != nil {
		return nil, err
	}
	if ch != nil {
		mux.Handle("/console/", ch)
		s.console = ch
	}
	s.Handler = mux
	return s, nil
}

// Run runs the outbox Worker, the silences' maintenance, the rate
// limiters' sampled audit rows, the channel caps' summaries, the
// evidence checkpointer and the console's overview until ctx ends. The checkpointer signs the chain's
// head once more as it stops, before the stores are closed.
func (s *Service) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.silences.Run(ctx) }()
	var wg sync.WaitGroup
	defer wg.Wait()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // before Wait: the Worker may end on its own
	for _, l := range s.limiters {
		wg.Go(func() { _ = l.Run(lctx) })
	}
	wg.Go(func() { s.Engine.runCaps(lctx) })
	if s.Checkpoints != nil {
		wg.Go(func() { _ = s.Checkpoints.Run(lctx) }) // it logs its own failures
	}
	if s.mirror != nil {
		wg.Go(func() { s.mirror(lctx) })
	}
	if s.router != nil {
		wg.Go(func() { _ = s.router.Run(lctx) }) // it logs its own failures; lctx ends it
	}
	if s.console != nil {
		wg.Go(func() { _ = s.console.Run(lctx) }) // it logs its own failures
	}
	err := s.Worker.Run(ctx)
	if serr := <-errc; err == nil && serr != nil && !errors.Is(serr, context.Canceled) {
		err = serr
	}
	return err
}

// Close releases the files.
func (s *Service) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func envOf(getenv func(string) string, name string) string {
	if name == "" {
		return ""
	}
	return getenv(name)
}

// secretOf returns a secret given either as the key's value (itself from
// the configuration file, AGENTWATCH_* or key_file) or in the variable
// that envKey names. Both at once is a mistake the operator must hear
// about, not a silent precedence. The error names keys and variables,
// never a value.
func secretOf(getenv func(string) string, value, key, envKey, envVar string) (string, error) {
	fromEnv := envOf(getenv, envVar)
	switch {
	case value != "" && fromEnv != "":
		return "", fmt.Errorf("%s is set, and so is %s, the variable %s names; keep one of the two", key, envVar, envKey)
	case value != "":
		return value, nil
	}
	return fromEnv, nil
}

// Guards builds the revocation adapters of cfg with their guards and
// ledger, without the rest of the responder: `responder restore` uses them
// beside a running responder (the ledger and deny-list are safe across
// processes; the outbox is not shared).
func Guards(cfg config.Config, getenv func(string) string, log *slog.Logger) (map[string]*revoke.Guard, *revoke.FileLedger, error) {
	return guardsWith(cfg, getenv, log, nil)
}

// GlobalGuards is Guards for the distributed mode: the ledger, budget and
// kill switch are those of glob (the global table), so a restore made
// with them is seen by every running instance.
func GlobalGuards(cfg config.Config, getenv func(string) string, log *slog.Logger, glob *global.Rules) (map[string]*revoke.Guard, error) {
	g, _, err := guardsWith(cfg, getenv, log, glob)
	return g, err
}

func guardsWith(cfg config.Config, getenv func(string) string, log *slog.Logger, glob *global.Rules) (map[string]*revoke.Guard, *revoke.FileLedger, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("responder state dir: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if glob != nil {
		g, _, _, err := buildGateways(cfg, playbooks.Set{}, glob.Ledger, glob, &gatewayExtras{}, getenv, nil, time.Now, log, prometheus.NewRegistry())
		return g, nil, err
	}
	ledger, err := openLedger(cfg.Responder, log)
	if err != nil {
		return nil, nil, err
	}
	g, _, _, err := buildGateways(cfg, playbooks.Set{}, ledger, nil, &gatewayExtras{}, getenv, nil, time.Now, log, prometheus.NewRegistry())
	return g, ledger, err
}

// openLedger opens the revocation ledger with responder.ledger_key and says
// at start what it will and will not keep, and what it holds that it
// cannot read or that sits in plain text.
func openLedger(rc config.Responder, log *slog.Logger) (*revoke.FileLedger, error) {
	var o revoke.LedgerOptions
	if rc.LedgerKey != "" {
		key, err := revoke.ParseLedgerKey(rc.LedgerKey)
		if err != nil {
			return nil, fmt.Errorf("responder.ledger_key: %w", err)
		}
		o.Key = key
	} else if rc.Kong.AdminURL != "" {
		// Only the kong adapter keeps a secret to restore; the others
		// keep a marker, which the ledger stores either way.
		log.Warn("responder.ledger_key is not set: the revocation ledger will not keep revoked Kong keys, so restoring one needs a new key issued by hand; set responder.ledger_key_file to a key from responder ledger-keygen to keep them encrypted")
	}
	l, err := revoke.OpenFileLedgerWith(filepath.Join(rc.StateDir, LedgerFile), o)
	if err != nil {
		return nil, err
	}
	enc, undecryptable, plain, err := l.Sealed(context.Background())
	if err != nil {
		return nil, err
	}
	if undecryptable > 0 {
		log.Warn("the revocation ledger holds restore material this responder.ledger_key cannot decrypt; restoring those credentials fails until the key they were written with is configured",
			"path", l.Path(), "records", undecryptable, "encrypted", enc)
	}
	if plain > 0 {
		log.Warn("the revocation ledger holds restore material in plain text, written before it was encrypted; it stays readable, and new records are encrypted",
			"path", l.Path(), "records", plain)
	}
	return l, nil
}

// ReadIncidents reads the incidents file of a state directory.
func ReadIncidents(stateDir string) ([]Incident, error) {
	s, err := loadIncidents(filepath.Join(stateDir, IncidentsFile), true)
	if err != nil {
		return nil, err
	}
	return s.list(), nil
}

// buildGateways makes a Guard per configured adapter and checks that every
// adapter and webhook target the playbooks name is configured.
func buildGateways(cfg config.Config, set playbooks.Set, ledger revoke.Ledger, glob *global.Rules, gx *gatewayExtras, getenv func(string) string,
	resolve func(context.Context, string) ([]netip.Addr, error), now func() time.Time, log *slog.Logger, reg prometheus.Registerer) (map[string]*revoke.Guard, map[string]revoke.Gateway, map[string]revoke.Throttler, error) {
	rc := cfg.Responder
	rm := revoke.NewMetrics(reg)
	egress, err := revoke.NewEgress(revoke.EgressOptions{Allow: rc.EgressAllow, Resolve: resolve, Metrics: rm})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("responder.egress_allow: %w", err)
	}
	budget, err := revoke.NewBudget(rc.RevokeBudget, rc.RevokeInterval, now)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("responder.revoke_budget: %w", err)
	}
	var claims *revoke.Claims
	var switches revoke.AnySwitch
	if glob != nil {
		// One budget for every instance: the fold over the claims in the
		// global table, re-counted at start by reading it.
		claims = glob.Claims
		revoke.RegisterBudget(reg, claims)
		switches = append(switches, glob.Switch)
	} else {
		src, ok := ledger.(revoke.BudgetSource)
		if !ok {
			return nil, nil, nil, errors.New("seed the revocation budget: the ledger cannot list its revocations")
		}
		if err := budget.SeedFrom(context.Background(), src); err != nil {
			return nil, nil, nil, fmt.Errorf("seed the revocation budget: %w", err)
		}
		revoke.RegisterBudget(reg, budget)
	}
	if rc.KillSwitchFile != "" {
		switches = append(switches, revoke.FileSwitch(rc.KillSwitchFile))
	}
	var kill revoke.KillSwitch = &revoke.Switch{}
	if len(switches) > 0 {
		kill = switches
	}
	gx.kill = kill
	gws := map[string]revoke.Gateway{}
	dpath := rc.Denylist.Path
	if dpath == "" {
		dpath = filepath.Join(rc.StateDir, "denylist.txt")
	}
	dl, err := revoke.NewDenylist(revoke.DenylistOptions{Path: dpath, Format: rc.Denylist.Format, Now: now})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("responder.denylist: %w", err)
	}
	gws["denylist"] = dl
	gx.denylist = dl
	if rc.Kong.AdminURL != "" {
		token, err := secretOf(getenv, rc.Kong.Token, "responder.kong.token", "responder.kong.token_env", rc.Kong.TokenEnv)
		if err != nil {
			return nil, nil, nil, err
		}
		k, err := revoke.NewKong(revoke.KongOptions{AdminURL: rc.Kong.AdminURL, Token: token, Egress: egress, Metrics: rm, Log: log})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("responder.kong: %w", err)
		}
		gws["kong"] = k
	}
	webhooks := map[string]revoke.Gateway{}
	for name, w := range rc.Webhooks {
		req, err := webhookRequest(w)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("responder.webhooks.%s: %w", name, err)
		}
		wo := revoke.WebhookOptions{Name: "webhook:" + name, Egress: egress, Metrics: rm, Log: log, Revoke: req}
		if r, ok := rc.Webhooks[name+"_restore"]; ok {
			req, err := webhookRequest(r)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("responder.webhooks.%s_restore: %w", name, err)
			}
			wo.Restore = &req
		}
		wh, err := revoke.NewWebhook(wo)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("responder.webhooks.%s: %w", name, err)
		}
		webhooks[name] = wh
	}
	if wh, ok := webhooks["revoke"]; ok {
		gws["webhook"] = wh
	}
	refs := set.References()
	var errs []error
	for _, a := range refs.Adapters {
		if _, ok := gws[a]; !ok {
			errs = append(errs, fmt.Errorf("playbooks use adapter %q, which is not configured (kong: responder.kong.admin_url; webhook: responder.webhooks.revoke)", a))
		}
	}
	for _, t := range refs.WebhookTargets {
		if _, ok := webhooks[t]; !ok {
			errs = append(errs, fmt.Errorf("playbooks call webhook %q, which is not in responder.webhooks", t))
		}
	}
	if len(errs) > 0 {
		return nil, nil, nil, errors.Join(errs...)
	}
	throttlers := map[string]revoke.Throttler{}
	if k, ok := gws["kong"].(*revoke.Kong); ok {
		throttlers["kong"] = k
	}
	guards := map[string]*revoke.Guard{}
	for name, gw := range gws {
		g, err := revoke.NewGuard(gw, revoke.Options{Ledger: ledger, Budget: budget, Claims: claims, Instance: instanceName(), Kill: kill, Metrics: rm, Log: log, Now: now})
		if err != nil {
			return nil, nil, nil, err
		}
		guards[name] = g
	}
	return guards, webhooks, throttlers, nil
}

// webhookRequest turns a configured target into the adapter's request,
// with the headers of header_file read from their files. A file's value
// goes in as a quoted template constant, so it renders as it is and never
// parses as a template (whose errors would quote it). Errors name the
// header and the path, never the value.
func webhookRequest(w config.WebhookTarget) (revoke.WebhookRequest, error) {
	r := revoke.WebhookRequest{Method: w.Method, URL: w.URL, Header: w.Header, Body: w.Body, BodyFormat: w.BodyFormat, AlreadyStatus: w.AlreadyStatus}
	if len(w.HeaderFile) == 0 {
		return r, nil
	}
	r.Header = make(map[string]string, len(w.Header)+len(w.HeaderFile))
	for k, v := range w.Header {
		r.Header[k] = v
	}
	for name, path := range w.HeaderFile {
		for k := range w.Header {
			if strings.EqualFold(k, name) {
				return r, fmt.Errorf("header %s is in both header and header_file; keep one", name)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return r, fmt.Errorf("header_file %s: %w", name, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return r, fmt.Errorf("header_file %s: %s is empty", name, path)
		}
		r.Header[name] = "{{" + strconv.Quote(v) + "}}"
	}
	return r, nil
}

// seenDeduper keeps Slack click keys in the handled set, so a replay is
// refused after a restart too.
type seenDeduper struct{ s outbox.Seen }

func (d seenDeduper) Seen(ctx context.Context, key string) (bool, error) {
	return d.s.Handled(ctx, "click:"+key)
}

func (d seenDeduper) Mark(ctx context.Context, key string) (bool, error) {
	return d.s.MarkHandled(ctx, "click:"+key)
}
