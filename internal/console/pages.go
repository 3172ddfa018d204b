package console

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/tabular"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// view is what every page's template gets.
type view struct {
	P       string // the prefix, for links
	Title   string
	Nav     string
	Who     string
	Scope   string
	CSRF    string
	CanAct  bool
	CanAdm  bool
	Flash   string
	Error   string
	Now     time.Time
	Data    any
	Session bool
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, s *session, name string, data any, code int) {
	t, ok := h.tmpl[name]
	if !ok {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	v := view{P: h.o.Prefix, Title: titles[name], Nav: name, Now: h.now().UTC(), Data: data,
		Flash: r.URL.Query().Get("done"), Error: r.URL.Query().Get("error")}
	if s != nil {
		v.Session, v.Who, v.Scope, v.CSRF = true, strings.TrimPrefix(s.actor.Name, proxyActorPrefix), s.scope.String(), s.csrf
		v.CanAct = !h.o.ReadOnly && h.o.Actions != nil && s.scope >= scopeAct
		v.CanAdm = !h.o.ReadOnly && h.o.Actions != nil && s.scope >= scopeAdmin
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		h.log.Error("render page", "page", name, "err", err)
		http.Error(w, "render failed; the log has the reason", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

var titles = map[string]string{
	"signin": "Sign in", "overview": "Overview", "incidents": "Incidents", "incident": "Incident",
	"agents": "Agents", "agent": "Agent", "inventory": "Inventory", "findings": "Findings",
	"access": "Access search", "reports": "Reports", "error": "Error",
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	h.log.Error("console page failed", "what", what, "err", err)
	if errors.Is(err, errNotAudited) {
		h.render(w, r, s, "error", what+" refused: its audit record could not be written", http.StatusServiceUnavailable)
		return
	}
	h.render(w, r, s, "error", what+" failed; the log has the reason", http.StatusInternalServerError)
}

// errNotAudited refuses a read whose audit record could not be written.
var errNotAudited = errors.New("the audit record of the question could not be written")

// ask writes the audit record of a read the console makes itself
// (incidents, window scores, reports), before it answers, as the
// visibility Service does for its questions: who asked what, when. A
// failed write refuses the read. Without an audit trail configured,
// nothing is recorded.
func (h *Handler) ask(ctx context.Context, s *session, question, agentID string) error {
	if h.o.Audit == nil {
		return nil
	}
	err := h.o.Audit.Append(context.WithoutCancel(ctx), audit.Record{AtMs: h.now().UnixMilli(), Actor: s.actor, Action: audit.ActionAsk,
		AgentID: agentID, Result: audit.ResultOK, Detail: question})
	if err != nil {
		return fmt.Errorf("%w: %v", errNotAudited, err)
	}
	return nil
}

// monthSpan is the current UTC month up to now. It ends at the end of
// the current day rather than now: no event is from the future, so the
// answer is the same, and whole days are read from the daily summaries
// alone.
func (h *Handler) monthSpan() visibility.Span {
	now := h.now().UTC()
	return visibility.Span{From: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), To: endOfDay(now)}
}

// lookback is the incidents' lookback, in whole UTC days like monthSpan.
func (h *Handler) lookback() visibility.Span {
	now := h.now().UTC()
	return visibility.Span{From: now.Add(-h.o.Lookback).Truncate(24 * time.Hour), To: endOfDay(now)}
}

func endOfDay(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour) }

// spanOf reads from and to (dates, 2026-03-15, or RFC 3339) from the
// query; without them, def. to given as a date means the end of that day.
func spanOf(r *http.Request, def visibility.Span) (visibility.Span, error) {
	sp := def
	parse := func(v string, end bool) (time.Time, error) {
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			if end {
				t = t.Add(24 * time.Hour)
			}
			return t, nil
		}
		if t, err := time.Parse("2006-01-02T15:04", v); err == nil {
			return t, nil
		}
		return time.Parse(time.RFC3339, v)
	}
	q := r.URL.Query()
	var errs []error
	if v := q.Get("from"); v != "" {
		t, err := parse(v, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("from %.40q: want a date (2026-03-15) or a time (2026-03-15T08:00)", v))
		}
		sp.From = t.UTC()
	}
	if v := q.Get("to"); v != "" {
		t, err := parse(v, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("to %.40q: want a date (2026-03-16) or a time (2026-03-15T18:00)", v))
		}
		sp.To = t.UTC()
	}
	if len(errs) == 0 && !sp.From.Before(sp.To) {
		errs = append(errs, errors.New("from must be before to"))
	}
	return sp, errors.Join(errs...)
}

// overviewData is the overview page.
type overviewData struct {
	Month string
	// AsOf is when the numbers were computed: the overview is kept for
	// overviewTTL.
	AsOf time.Time
	// Updating: the copy is older than overviewTTL and a newer one is
	// being computed in the background.
	Updating                     bool
	Agents, Registered, Shadow   int
	Dormant, NeverSeen           int
	RegisteredPct, DocumentedPct string
	Routes, Documented, Zombies  int
	Calls                        uint64
	Anomalies, FalsePositives    int
	FalsePositivePct             string
	Findings                     int
	FindingKinds                 []kindCount
	Review                       []reviewAgent
	Open                         []*incident
	Denials                      uint64
	Unapproved                   int
}

type kindCount struct {
	Kind  string
	Count int
}

type reviewAgent struct {
	AgentID, Owner string
	Kinds          []string
}

func pct(n, d int) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(d))
}

// overviewKey is the kept overview's key: one for everyone when the
// console has an audit trail (the numbers do not depend on who asks, and
// every view is recorded under the viewer's name), one per person
// otherwise.
func (h *Handler) overviewKey(s *session) string {
	if h.o.Audit == nil {
		return "person " + s.actor.String()
	}
	return "overview"
}

// overviewPage serves the kept overview (see overviewCache). A view of a
// copy computed for someone else (or by Run) is recorded under the
// viewer's name; when that record cannot be written, the overview is
// asked again, under the viewer's name.
func (h *Handler) overviewPage(w http.ResponseWriter, r *http.Request, s *session) {
	served := func(by audit.Actor, d overviewData) bool {
		if h.o.Audit == nil {
			return false
		}
		err := h.o.Audit.Append(r.Context(), audit.Record{AtMs: h.now().UnixMilli(), Actor: s.actor, Action: audit.ActionAsk, Result: audit.ResultOK,
			Detail: "overview: the copy as of " + d.AsOf.Format(time.RFC3339) + ", asked by " + by.String()})
		if err != nil {
			h.log.Error("audit record not stored; asking the overview again", "who", s.actor.String(), "err", err)
		}
		return err == nil
	}
	d, old, err := h.overview.get(r.Context(), h.overviewKey(s), s.actor, served, func(ctx context.Context) (overviewData, error) {
		return h.overviewData(ctx, s)
	})
	if err != nil {
		var pe pageError
		if errors.As(err, &pe) {
			h.fail(w, r, s, pe.what, pe.err)
			return
		}
		h.fail(w, r, s, "overview", err)
		return
	}
	d.Updating = old
	h.render(w, r, s, "overview", d, http.StatusOK)
}

// Run keeps the overview computed in the background until ctx ends, so
// that a view is served a copy instead of waiting most of a second for
// the fleet's numbers: once at the start, then again before the copy
// is a minute old as long as someone viewed it in the last 15 minutes,
// and at once after an action. Its questions are recorded in the audit
// trail as asked by "automatic" (and each view of the copy under the
// viewer's name). A console without an audit trail keeps a copy per
// person and nothing in the background: Run returns at once.
func (h *Handler) Run(ctx context.Context) error {
	if h.o.Audit == nil {
		return nil
	}
	h.overview.running.Store(true)
	defer h.overview.running.Store(false)
	auto := &session{actor: audit.Actor{Kind: audit.ActorAutomatic}, scope: scopeRead}
	compute := func(ctx context.Context) (overviewData, error) { return h.overviewData(ctx, auto) }
	t := time.NewTicker(h.overview.tick)
	defer t.Stop()
	for warm := true; ; warm = false {
		start := time.Now()
		did, err := h.overview.refresh(ctx, "overview", auto.actor, warm, compute)
		switch {
		case err != nil && ctx.Err() == nil:
			h.log.Error("overview not computed in the background; views compute it themselves for a minute", "err", err)
		case did:
			h.log.Debug("overview computed in the background", "took", time.Since(start))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-h.overview.kick:
		}
	}
}

// pageError names the part of a page that failed.
type pageError struct {
	what string
	err  error
}

func (e pageError) Error() string { return e.what + ": " + e.err.Error() }

func (h *Handler) overviewData(ctx context.Context, s *session) (overviewData, error) {
	month := h.monthSpan()
	var (
		agents []visibility.AgentRow
		routes []visibility.RouteRow
		finds  []visibility.Finding
		incs   incidentSet
	)
	// Four independent questions, asked at once.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		if agents, err = h.o.Visibility.Agents(gctx, s.actor, month); err != nil {
			return pageError{"agents", err}
		}
		return nil
	})
	g.Go(func() (err error) {
		if routes, err = h.o.Visibility.Routes(gctx, s.actor, month); err != nil {
			return pageError{"routes", err}
		}
		return nil
	})
	g.Go(func() (err error) {
		if finds, err = h.o.Visibility.Findings(gctx, s.actor); err != nil {
			return pageError{"findings", err}
		}
		return nil
	})
	g.Go(func() (err error) {
		if incs, err = h.loadIncidents(gctx, s, "", month, ""); err != nil {
			return pageError{"incidents", err}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return overviewData{}, err
	}
	d := overviewData{Month: month.From.Format("January 2006"), Findings: len(finds), AsOf: h.now().UTC()}
	seen := 0
	for _, a := range agents {
		switch a.Lifecycle {
		case visibility.LifecycleShadow:
			d.Shadow++
		case visibility.LifecycleDormant:
			d.Dormant++
		case visibility.LifecycleNeverSeen:
			d.NeverSeen++
		}
		if a.Calls > 0 {
			seen++
			if a.Registered {
				d.Registered++
			}
		}
		d.Calls += a.Calls
		d.Denials += a.Status.S401 + a.Status.S403
		d.Unapproved += a.UnapprovedRoutes
	}
	d.Agents = seen
	d.RegisteredPct = pct(d.Registered, seen)
	for _, rt := range routes {
		if rt.Calls == 0 {
			continue
		}
		d.Routes++
		if rt.Documented {
			d.Documented++
		}
		if rt.Deprecated {
			d.Zombies++
		}
	}
	d.DocumentedPct = pct(d.Documented, d.Routes)
	fp := map[string]bool{}
	for _, in := range incs.list {
		if in.Open {
			d.Open = append(d.Open, in)
		}
		for _, rec := range in.Actions {
			if rec.Action == "false_positive" && rec.Result == audit.ResultOK {
				fp[rec.AnomalyID] = true
			}
		}
	}
	d.Anomalies, d.FalsePositives = incs.anomalies, len(fp)
	d.FalsePositivePct = pct(d.FalsePositives, d.Anomalies)
	kinds := map[string]int{}
	byAgent := map[string]*reviewAgent{}
	for _, f := range finds {
		kinds[string(f.Kind)]++
		if f.AgentID == "" {
			continue
		}
		ra := byAgent[f.AgentID]
		if ra == nil {
			ra = &reviewAgent{AgentID: f.AgentID, Owner: f.Owner}
			byAgent[f.AgentID] = ra
		}
		if !slices.Contains(ra.Kinds, string(f.Kind)) {
			ra.Kinds = append(ra.Kinds, string(f.Kind))
		}
	}
	for k, n := range kinds {
		d.FindingKinds = append(d.FindingKinds, kindCount{k, n})
	}
	slices.SortFunc(d.FindingKinds, func(a, b kindCount) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Kind, b.Kind)) })
	for _, ra := range byAgent {
		d.Review = append(d.Review, *ra)
	}
	slices.SortFunc(d.Review, func(a, b reviewAgent) int {
		return cmp.Or(len(b.Kinds)-len(a.Kinds), strings.Compare(a.AgentID, b.AgentID))
	})
	if len(d.Review) > 20 {
		d.Review = d.Review[:20]
	}
	return d, nil
}

// incident is the console's view of one incident: the audit records that
// name it, the anomalies they name, and its evidence bundle.
type incident struct {
	ID, AgentID     string
	FirstMs, LastMs int64
	Anomalies       []anomaly.Anomaly
	Actions         []audit.Record
	// Open: no false-positive verdict and no restore closed it.
	Open bool
	// Approvals are the approval requests (step ids) still waiting.
	Approvals []string
	// Restorable: a revocation or quarantine of it was carried out.
	Restorable bool
	Timeline   []timelineEntry
	Bundles    []bundleStatus
}

type timelineEntry struct {
	AtMs    int64
	Kind    string
	Summary string
	Actor   string
	Result  string
}

type bundleStatus struct {
	ID       string
	Files    int
	Verified bool
	Problem  string
}

type incidentSet struct {
	list      []*incident
	byID      map[string]*incident
	anomalies int
}

// loadIncidents reads the span's anomalies and actions, question (or
// "incidents span=…" when empty) recorded first under s.
func (h *Handler) loadIncidents(ctx context.Context, s *session, question string, span visibility.Span, agentID string) (incidentSet, error) {
	if question == "" {
		question = "incidents span=" + span.String()
	}
	if err := h.ask(ctx, s, question, agentID); err != nil {
		return incidentSet{}, err
	}
	ans, err := h.o.Records.Anomalies(ctx, span, agentID)
	if err != nil {
		return incidentSet{}, err
	}
	recs, err := h.o.Records.Actions(ctx, span, agentID)
	if err != nil {
		return incidentSet{}, err
	}
	byAnomaly := make(map[string]anomaly.Anomaly, len(ans))
	for _, a := range ans {
		byAnomaly[a.ID] = a
	}
	set := incidentSet{byID: map[string]*incident{}, anomalies: len(ans)}
	answered := map[string]bool{}
	for _, rec := range recs {
		if rec.Action == "approve" && rec.Result == audit.ResultOK && rec.StepID != "" {
			answered[rec.StepID] = true
		}
	}
	for _, rec := range recs {
		if rec.IncidentID == "" {
			continue
		}
		in := set.byID[rec.IncidentID]
		if in == nil {
			in = &incident{ID: rec.IncidentID, AgentID: rec.AgentID, FirstMs: rec.AtMs, Open: true}
			set.byID[rec.IncidentID] = in
			set.list = append(set.list, in)
		}
		in.FirstMs, in.LastMs = min(in.FirstMs, rec.AtMs), max(in.LastMs, rec.AtMs)
		if in.AgentID == "" {
			in.AgentID = rec.AgentID
		}
		in.Actions = append(in.Actions, rec)
		if rec.AnomalyID != "" && !slices.ContainsFunc(in.Anomalies, func(a anomaly.Anomaly) bool { return a.ID == rec.AnomalyID }) {
			if a, ok := byAnomaly[rec.AnomalyID]; ok {
				in.Anomalies = append(in.Anomalies, a)
			}
		}
		switch {
		case (rec.Action == "false_positive" || rec.Action == "restore") && rec.Result == audit.ResultOK:
			in.Open = false
		case (rec.Action == "revoke" || rec.Action == "quarantine") && rec.Result == audit.ResultOK && !rec.DryRun:
			in.Restorable = true
		case rec.Action == "approve" && rec.Result == audit.ResultNeedsApproval && rec.StepID != "" && !answered[rec.StepID]:
			if !slices.Contains(in.Approvals, rec.StepID) {
				in.Approvals = append(in.Approvals, rec.StepID)
			}
		}
	}
	// The records name the anomalies the responder acted on; the others
	// that joined the incident (an agent's anomalies within the incident
	// window of its last one) are named by none. So an incident also
	// holds its agent's anomalies from the first it names to its last
	// record, each in one incident only (the earliest that covers it).
	byAgent := map[string][]anomaly.Anomaly{}
	for _, a := range ans {
		byAgent[a.AgentID] = append(byAgent[a.AgentID], a)
	}
	taken := map[string]bool{}
	for _, in := range set.list {
		for _, a := range in.Anomalies {
			taken[a.ID] = true
		}
	}
	ordered := slices.Clone(set.list)
	slices.SortFunc(ordered, func(a, b *incident) int { return cmp.Compare(a.FirstMs, b.FirstMs) })
	for _, in := range ordered {
		if len(in.Anomalies) == 0 {
			continue
		}
		from := in.Anomalies[0].WindowStartMs
		for _, a := range in.Anomalies {
			from = min(from, a.WindowStartMs)
		}
		for _, a := range byAgent[in.AgentID] {
			if !taken[a.ID] && a.WindowStartMs >= from && a.WindowStartMs <= in.LastMs {
				taken[a.ID] = true
				in.Anomalies = append(in.Anomalies, a)
			}
		}
		slices.SortStableFunc(in.Anomalies, func(a, b anomaly.Anomaly) int { return cmp.Compare(a.WindowStartMs, b.WindowStartMs) })
	}
	for _, in := range set.list {
		for _, a := range in.Anomalies {
			in.FirstMs = min(in.FirstMs, a.WindowStartMs)
			in.Timeline = append(in.Timeline, timelineEntry{AtMs: cmp.Or(a.DetectedMs, a.WindowEndMs), Kind: "anomaly " + a.Kind,
				Summary: a.Summary, Actor: "detector", Result: a.Severity})
		}
		for _, rec := range in.Actions {
			sum := rec.Detail
			if rec.Why != "" {
				sum = rec.Why + " — " + rec.Detail
			}
			in.Timeline = append(in.Timeline, timelineEntry{AtMs: rec.AtMs, Kind: rec.Action, Summary: sum, Actor: rec.Actor.String(), Result: string(rec.Result)})
		}
		slices.SortStableFunc(in.Timeline, func(a, b timelineEntry) int { return cmp.Compare(a.AtMs, b.AtMs) })
	}
	slices.SortFunc(set.list, func(a, b *incident) int { return cmp.Or(cmp.Compare(b.LastMs, a.LastMs), strings.Compare(a.ID, b.ID)) })
	return set, nil
}

func (h *Handler) incidents(w http.ResponseWriter, r *http.Request, s *session) {
	set, err := h.loadIncidents(r.Context(), s, "", h.lookback(), "")
	if err != nil {
		h.fail(w, r, s, "incidents", err)
		return
	}
	h.render(w, r, s, "incidents", set.list, http.StatusOK)
}

func (h *Handler) incidentPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.URL.Query().Get("id")
	set, err := h.loadIncidents(r.Context(), s, "incident "+strconv.Quote(id), h.lookback(), "")
	if err != nil {
		h.fail(w, r, s, "incidents", err)
		return
	}
	in, ok := set.byID[id]
	if !ok {
		h.render(w, r, s, "error", "No incident with that id in the last "+h.o.Lookback.String()+".", http.StatusNotFound)
		return
	}
	if h.o.EvidenceDir != "" {
		// A snapshot step writes the bundle named after its step id.
		seen := map[string]bool{}
		for _, rec := range in.Actions {
			if rec.Action != "snapshot" || rec.Result != audit.ResultOK || rec.StepID == "" || seen[rec.StepID] {
				continue
			}
			seen[rec.StepID] = true
			bid := evidence.BundleID(rec.StepID)
			b := bundleStatus{ID: bid}
			if _, err := os.Stat(filepath.Join(h.o.EvidenceDir, bid)); err != nil {
				b.Problem = "not under the evidence directory here"
			} else {
				m, _, verr := evidence.VerifyFiles(h.o.EvidenceDir, bid)
				b.Files, b.Verified = len(m.Files), verr == nil
				if verr != nil {
					b.Problem = verr.Error()
				}
			}
			in.Bundles = append(in.Bundles, b)
		}
	}
	h.render(w, r, s, "incident", in, http.StatusOK)
}

func (h *Handler) agents(w http.ResponseWriter, r *http.Request, s *session) {
	sp, err := spanOf(r, h.monthSpan())
	if err != nil {
		h.render(w, r, s, "error", err.Error(), http.StatusBadRequest)
		return
	}
	rows, err := h.o.Visibility.Agents(r.Context(), s.actor, sp)
	if err != nil {
		h.fail(w, r, s, "agents", err)
		return
	}
	h.render(w, r, s, "agents", map[string]any{"Rows": rows, "Span": sp}, http.StatusOK)
}

// agentData is the agent page.
type agentData struct {
	Profile  visibility.AgentProfile
	Span     visibility.Span
	Plots    []featurePlot
	NoScores bool
	Silence  string
	// Back is this page's own address, id and span URL-encoded, for the
	// silence form to return to.
	Back string
}

func (h *Handler) agentPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > 256 {
		h.render(w, r, s, "error", "Give an agent id.", http.StatusBadRequest)
		return
	}
	sp, err := spanOf(r, h.monthSpan())
	if err != nil {
		h.render(w, r, s, "error", err.Error(), http.StatusBadRequest)
		return
	}
	p, err := h.o.Visibility.Agent(r.Context(), s.actor, id, sp)
	if err != nil {
		h.fail(w, r, s, "agent profile", err)
		return
	}
	d := agentData{Profile: p, Span: sp, NoScores: true,
		Silence: silence.Matcher{Name: "agent_id", Value: id, Type: silence.MatchEqual}.String()}
	back := url.Values{"id": {id}}
	for _, k := range []string{"from", "to"} {
		if v := r.URL.Query().Get(k); v != "" {
			back.Set(k, v)
		}
	}
	d.Back = h.o.Prefix + "/agent?" + back.Encode()
	if h.o.Scores != nil {
		// The plots show the last day of the span: window scores are
		// per minute, and a month of them would be a smear.
		to := sp.To.UnixMilli()
		if p.Agent.LastSeenMs > 0 && p.Agent.LastSeenMs < to {
			to = p.Agent.LastSeenMs + 1
		}
		from := max(sp.From.UnixMilli(), to-24*time.Hour.Milliseconds())
		q := "scores agent=" + strconv.Quote(id) + " span=" + visibility.Span{From: time.UnixMilli(from).UTC(), To: time.UnixMilli(to).UTC()}.String()
		if err := h.ask(r.Context(), s, q, id); err != nil {
			h.fail(w, r, s, "window scores", err)
			return
		}
		scores, err := h.o.Scores.Scores(r.Context(), id, from, to)
		if err != nil {
			h.log.Warn("window scores unavailable", "agent_id", id, "err", err)
		} else if len(scores) > 0 {
			d.Plots, d.NoScores = featurePlots(scores), false
		}
	}
	h.render(w, r, s, "agent", d, http.StatusOK)
}

func (h *Handler) inventory(w http.ResponseWriter, r *http.Request, s *session) {
	sp, err := spanOf(r, h.monthSpan())
	if err != nil {
		h.render(w, r, s, "error", err.Error(), http.StatusBadRequest)
		return
	}
	rows, err := h.o.Visibility.Routes(r.Context(), s.actor, sp)
	if err != nil {
		h.fail(w, r, s, "routes", err)
		return
	}
	h.render(w, r, s, "inventory", map[string]any{"Rows": rows, "Span": sp}, http.StatusOK)
}

func (h *Handler) findings(w http.ResponseWriter, r *http.Request, s *session) {
	fs, err := h.o.Visibility.Findings(r.Context(), s.actor)
	if err != nil {
		h.fail(w, r, s, "findings", err)
		return
	}
	h.render(w, r, s, "findings", fs, http.StatusOK)
}

// accessRequest reads the access form from the query; asked is false when
// the form was not submitted.
func (h *Handler) accessRequest(r *http.Request) (visibility.AccessRequest, bool, error) {
	q := r.URL.Query()
	now := h.now().UTC()
	day := now.Truncate(24 * time.Hour)
	sp, err := spanOf(r, visibility.Span{From: day, To: day.Add(24 * time.Hour)})
	req := visibility.AccessRequest{Span: sp, Template: strings.TrimSpace(q.Get("template")), Tag: strings.TrimSpace(q.Get("tag")),
		AgentID: strings.TrimSpace(q.Get("agent"))}
	asked := q.Has("from") || q.Has("template") || q.Has("tag")
	if err == nil && asked && req.Template == "" && req.Tag == "" {
		err = errors.New("give a route template or a tag")
	}
	return req, asked, err
}

func (h *Handler) access(w http.ResponseWriter, r *http.Request, s *session) {
	req, asked, err := h.accessRequest(r)
	// The CSV link asks the same question: the query re-encoded, so only
	// the form's own parameters go into it.
	csvq := url.Values{}
	for _, k := range []string{"from", "to", "tag", "template", "agent"} {
		if v := r.URL.Query().Get(k); v != "" {
			csvq.Set(k, v)
		}
	}
	d := map[string]any{"Req": req, "Asked": asked, "CSV": template.URL(h.path("/access.csv?") + csvq.Encode())}
	if asked && err != nil {
		d["Problem"] = err.Error()
		h.render(w, r, s, "access", d, http.StatusBadRequest)
		return
	}
	if asked {
		ans, err := h.o.Visibility.Access(r.Context(), s.actor, req)
		if errors.Is(err, respapi.ErrBadRequest) {
			d["Problem"] = err.Error()
			h.render(w, r, s, "access", d, http.StatusBadRequest)
			return
		}
		if err != nil {
			h.fail(w, r, s, "access", err)
			return
		}
		d["Answer"] = ans
	}
	h.render(w, r, s, "access", d, http.StatusOK)
}

func (h *Handler) accessCSV(w http.ResponseWriter, r *http.Request, s *session) {
	req, _, err := h.accessRequest(r)
	if err == nil && req.Template == "" && req.Tag == "" {
		err = errors.New("give a route template or a tag")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ans, err := h.o.Visibility.Access(r.Context(), s.actor, req)
	if err != nil {
		h.log.Error("access csv", "err", err)
		http.Error(w, "access question failed; the log has the reason", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="access.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"agent_id", "calls", "request_bytes", "response_bytes", "status_2xx", "status_4xx", "status_401", "status_403", "status_5xx",
		"first_call", "last_call", "routes", "sample_request_ids"})
	for _, row := range ans.Rows {
		u := func(n uint64) string { return strconv.FormatUint(n, 10) }
		cells := []string{row.AgentID, u(row.Calls), u(row.RequestBytes), u(row.ResponseBytes), u(row.Status.S2xx), u(row.Status.S4xx),
			u(row.Status.S401), u(row.Status.S403), u(row.Status.S5xx), fmtMs(row.FirstMs), fmtMs(row.LastMs),
			strings.Join(row.Routes, " "), strings.Join(row.SampleRequestIDs, " ")}
		for i := range cells {
			cells[i] = tabular.SafeCell(cells[i])
		}
		_ = cw.Write(cells)
	}
	cw.Flush()
}

// report is one file of the reports directory.
type report struct {
	Name     string
	Size     int64
	Modified time.Time
}

func (h *Handler) listReports() ([]report, error) {
	if h.o.ReportsDir == "" {
		return nil, nil
	}
	des, err := os.ReadDir(h.o.ReportsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []report
	for _, de := range des {
		if !de.Type().IsRegular() || !reportName(de.Name()) {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		out = append(out, report{Name: de.Name(), Size: fi.Size(), Modified: fi.ModTime().UTC()})
	}
	slices.SortFunc(out, func(a, b report) int { return cmp.Or(b.Modified.Compare(a.Modified), strings.Compare(a.Name, b.Name)) })
	return out, nil
}

// reportName: a plain file name ending .html or .pdf.
func reportName(n string) bool {
	ext := strings.ToLower(filepath.Ext(n))
	return (ext == ".html" || ext == ".pdf") && n != "" && n[0] != '.' && !strings.ContainsAny(n, "/\\") && len(n) <= 200
}

func (h *Handler) reports(w http.ResponseWriter, r *http.Request, s *session) {
	rs, err := h.listReports()
	if err != nil {
		h.fail(w, r, s, "reports", err)
		return
	}
	h.render(w, r, s, "reports", map[string]any{"Reports": rs, "Configured": h.o.ReportsDir != ""}, http.StatusOK)
}

func (h *Handler) reportFile(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if h.o.ReportsDir == "" || !reportName(name) {
		http.NotFound(w, r)
		return
	}
	root, err := os.OpenRoot(h.o.ReportsDir)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if err := h.ask(r.Context(), s, "report "+strconv.Quote(name), ""); err != nil {
		h.fail(w, r, s, "report", err)
		return
	}
	if strings.EqualFold(filepath.Ext(name), ".html") {
		// A report is a document of its own: its inline styles may run,
		// nothing else, and it is sandboxed away from the console.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/pdf")
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// act runs one action and redirects back with its outcome.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, s *session, back, done string, run func() error) {
	if h.o.ReadOnly || h.o.Actions == nil {
		h.refused(r, s, "console is read-only")
		http.Error(w, "this console is read-only", http.StatusForbidden)
		return
	}
	err := run()
	h.overview.clear() // the next overview shows the action's effect
	q := "done=" + urlEscape(done)
	switch {
	case errors.Is(err, respapi.ErrQueued):
		q = "done=" + urlEscape(done+" (queued for the responder that owns the incident)")
	case errors.Is(err, respapi.ErrNotFound), errors.Is(err, respapi.ErrBadRequest), errors.Is(err, silence.ErrInvalid):
		q = "error=" + urlEscape(err.Error())
	case err != nil:
		h.log.Error("console action failed", "who", s.actor.String(), "err", err)
		q = "error=" + urlEscape("failed; the responder log has the reason")
	}
	sep := "?"
	if strings.Contains(back, "?") {
		sep = "&"
	}
	http.Redirect(w, r, back+sep+q, http.StatusSeeOther)
}

// maxSilence matches the API's bound on a silence.
const maxSilence = 30 * 24 * time.Hour

func (h *Handler) actSilence(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	back := h.localNext(f.Get("back"))
	h.act(w, r, s, back, "silence added", func() error {
		ms := strings.TrimSpace(f.Get("matchers"))
		if _, err := silence.ParseMatchers(ms); err != nil {
			return fmt.Errorf("%w: matchers: %v", respapi.ErrBadRequest, err)
		}
		d, err := time.ParseDuration(f.Get("duration"))
		if err != nil || d <= 0 || d > maxSilence {
			return fmt.Errorf("%w: duration: want e.g. 2h, at most %s", respapi.ErrBadRequest, maxSilence)
		}
		_, err = h.o.Actions.Silence(r.Context(), s.actor, ms, d, strings.TrimSpace(f.Get("comment")))
		return err
	})
}

func (h *Handler) actFalsePositive(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	inc, an := f.Get("incident"), f.Get("anomaly")
	h.act(w, r, s, h.path("/incident?id="+urlEscape(inc)), "marked false positive", func() error {
		if inc == "" || an == "" || len(inc) > 256 || len(an) > 256 {
			return fmt.Errorf("%w: incident and anomaly: required", respapi.ErrBadRequest)
		}
		return h.o.Actions.FalsePositive(r.Context(), s.actor, inc, an)
	})
}

func (h *Handler) actAnswer(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	inc, req := f.Get("incident"), f.Get("request")
	approved := f.Get("answer") == "approve"
	done := "denied"
	if approved {
		done = "approved"
	}
	h.act(w, r, s, h.path("/incident?id="+urlEscape(inc)), done, func() error {
		if req == "" || len(req) > 256 || (f.Get("answer") != "approve" && f.Get("answer") != "deny") {
			return fmt.Errorf("%w: request and answer (approve or deny): required", respapi.ErrBadRequest)
		}
		return h.o.Actions.Answer(r.Context(), s.actor, req, approved)
	})
}

func (h *Handler) actRestore(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	inc := f.Get("incident")
	h.act(w, r, s, h.path("/incident?id="+urlEscape(inc)), "restore queued", func() error {
		if inc == "" || len(inc) > 256 {
			return fmt.Errorf("%w: incident: required", respapi.ErrBadRequest)
		}
		return h.o.Actions.Restore(r.Context(), s.actor, inc, strings.TrimSpace(f.Get("reason")))
	})
}
