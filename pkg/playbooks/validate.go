package playbooks

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"

	"github.com/agentwatch/agentwatch/pkg/suggest"
)

// FieldError is one problem of a playbook file or Set. Parse and Validate
// return them joined (errors.Join); use errors.As to get the first, or
// unwrap the join for all.
type FieldError struct {
	// File is the file the playbook came from; "" for a Set built in code.
	File string
	// Line is the line in File, 0 when unknown.
	Line int
	// Index is the playbook's position in its file (or in the Set when
	// built in code); -1 for a problem of the file itself.
	Index int
	// Playbook is the playbook's name, "" when it has none (yet).
	Playbook string
	// Field is the path inside the playbook, e.g. "steps[2].ttl" or
	// "trigger.kinds[0]"; at file level, "playbooks" or "".
	Field string
	Msg   string
}

// Error formats the problem as
// `FILE:LINE: playbook "NAME": FIELD: MESSAGE`, leaving out what is
// unknown, and naming an unnamed playbook `playbooks[INDEX]`.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Index < 0:
	case e.Playbook != "":
		fmt.Fprintf(&b, "playbook %.64q: ", e.Playbook)
	default:
		fmt.Fprintf(&b, "playbooks[%d]: ", e.Index)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Limits that keep a typo from becoming an outage.
const (
	// MaxTTL is the longest TTL: a block meant for longer is a revoke.
	MaxTTL = 30 * 24 * time.Hour
	// MaxWait bounds an approve step's timeout and a snapshot's
	// before/after.
	MaxWait = 24 * time.Hour
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	targetRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	channelRE = regexp.MustCompile(`^(#[a-z0-9][a-z0-9_-]{0,79}|[CG][A-Z0-9]{6,20})$`)
	slackIDRE = regexp.MustCompile(`^[UWS][A-Z0-9]{6,20}$`)
)

// aggregateKinds name no single agent: their agent_id is *global/… or
// *flood/…, so nothing may act on "the agent" of one.
var aggregateKinds = []string{anomaly.GlobalEvent, anomaly.AgentFlood}

// statisticalKinds come from the baseline; every other kind is a rule.
var statisticalKinds = []string{anomaly.Behaviour, anomaly.Drift, anomaly.GlobalEvent, anomaly.SustainedExcess}

// severities in increasing order, named as pkg/baseline names them.
var severities = []string{baseline.Low.String(), baseline.Medium.String(), baseline.High.String(), baseline.Critical.String()}

// severityRank orders severities as baseline.Severity does: 0 for none
// or an unknown name, then low (1) to critical (4).
func severityRank(s string) int {
	for sv := baseline.Low; sv <= baseline.Critical; sv++ {
		if sv.String() == s {
			return int(sv)
		}
	}
	return 0
}

// featureNames are the names an anomaly explanation can hold: the window
// features, plus the detector's off-hours terms.
func featureNames() []string {
	out := make([]string, 0, features.NumFeatures+2)
	for id := range features.NumFeatures {
		out = append(out, id.String())
	}
	return append(out, contributionless...)
}

// contributionless are the explanation terms that are not window
// features and carry no contribution: off_hours is the behaviour
// anomaly's hour-slot term, calls_this_hour the off_hours rule's only
// feature (internal/detector/detect).
var contributionless = []string{"off_hours", "calls_this_hour"}

// classNames are the attack classes a trigger may name.
func classNames() []string {
	var out []string
	for _, c := range attack.Classes() {
		out = append(out, string(c))
	}
	return out
}

// Validate reports every problem of the Set at once, joined, each a
// *FieldError naming the file, line, playbook and field; nil when the Set
// is valid. Parse has already called it.
func (s Set) Validate() error {
	var errs []error
	first := map[string]int{}
	for i := range s.Playbooks {
		pb := &s.Playbooks[i]
		v := &validator{pb: pb, index: i}
		if pb.src.lines != nil {
			v.index = pb.src.index
		}
		v.playbook()
		if j, dup := first[pb.Name]; dup && pb.Name != "" {
			o := &s.Playbooks[j]
			where := fmt.Sprintf("playbooks[%d]", j)
			if o.File != "" {
				where = "the playbook in " + o.File
				if l := o.src.lines[""]; l > 0 {
					where += ":" + strconv.Itoa(l)
				}
			}
			v.bad("name", "duplicate of %s; names must be unique across all playbook files", where)
		} else {
			first[pb.Name] = i
		}
		// In file order; fields without a line keep the order of checks.
		slices.SortStableFunc(v.errs, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
		for _, e := range v.errs {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

type validator struct {
	pb    *Playbook
	index int
	errs  []*FieldError
}

func (v *validator) bad(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{
		File: v.pb.File, Line: v.line(path), Index: v.index, Playbook: v.pb.Name, Field: path,
		Msg: fmt.Sprintf(format, args...),
	})
}

// line returns the line of path, or of the nearest enclosing field.
func (v *validator) line(path string) int {
	for {
		if l, ok := v.pb.src.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = path[:max(0, strings.LastIndexAny(path, ".["))]
	}
}

func (v *validator) playbook() {
	pb := v.pb
	switch {
	case pb.Name == "":
		v.bad("name", "required; e.g. name: exfiltration")
	case !nameRE.MatchString(pb.Name):
		v.bad("name", "must be lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 64 bytes (it is a metric label and a CLI argument), got %.64q", pb.Name)
	}
	switch {
	case pb.ManualOnly && pb.Trigger != nil:
		v.bad("trigger", "a manual_only playbook never matches an anomaly; remove the trigger or manual_only")
	case !pb.ManualOnly && pb.Trigger == nil:
		v.bad("trigger", "required; write trigger: {} to match every anomaly, or set manual_only: true for a playbook run only by hand")
	case pb.Trigger != nil:
		v.trigger(pb.Trigger)
	}
	switch {
	case len(pb.Steps) == 0:
		v.bad("steps", "need at least one step")
	case len(pb.Steps) > maxSteps:
		v.bad("steps", "%d steps; at most %d", len(pb.Steps), maxSteps)
	}
	for i := range pb.Steps {
		v.step(i, &pb.Steps[i])
	}
}

// maxRiskFor bounds a trigger's risk_for: an episode of elevated risk
// longer than 30 days is no condition anyone can wait for.
const maxRiskFor = 720 * time.Hour

func (v *validator) trigger(t *Trigger) {
	kinds := anomaly.Kinds()
	for _, l := range []struct {
		key  string
		list []string
	}{{"trigger.kinds", t.Kinds}, {"trigger.exclude_kinds", t.ExcludeKinds}} {
		for i, k := range l.list {
			if !slices.Contains(kinds, k) {
				v.bad(fmt.Sprintf("%s[%d]", l.key, i), "unknown anomaly kind %.64q%s", k, hint(k, kinds))
			}
		}
	}
	for i, k := range t.ExcludeKinds {
		if slices.Contains(t.Kinds, k) {
			v.bad(fmt.Sprintf("trigger.exclude_kinds[%d]", i), "%q is in kinds too; keep it in one of the two", k)
		}
	}
	switch t.Class {
	case "", ClassRule, ClassStatistical:
	default:
		v.bad("trigger.class", "must be rule or statistical (or left out for both), got %.64q", t.Class)
	}
	classes := classNames()
	for i, c := range t.Classes {
		if !slices.Contains(classes, c) {
			v.bad(fmt.Sprintf("trigger.classes[%d]", i), "unknown attack class %.64q%s", c, hint(c, classes))
		}
	}
	if !slices.ContainsFunc(kinds, t.kindMatches) && !v.has("trigger.kinds", "trigger.exclude_kinds", "trigger.class", "trigger.classes") {
		v.bad("trigger", "matches no anomaly kind (kinds, exclude_kinds, class and classes exclude them all)")
	}
	v.severity("trigger.min_severity", t.MinSeverity)
	if !(t.MinScore >= 0) || math.IsInf(t.MinScore, 0) {
		v.bad("trigger.min_score", "must be a number >= 0, got %g", t.MinScore)
	}
	if !(t.MinRisk >= 0) || math.IsInf(t.MinRisk, 0) {
		v.bad("trigger.min_risk", "must be a number >= 0, got %g", t.MinRisk)
	}
	if t.RiskFor < 0 || t.RiskFor > maxRiskFor {
		v.bad("trigger.risk_for", "must be in [0, %s], got %s", fmtDuration(maxRiskFor), fmtDuration(t.RiskFor))
	}
	names := featureNames()
	for i, f := range t.Features {
		if !slices.Contains(names, f) {
			v.bad(fmt.Sprintf("trigger.features[%d]", i), "unknown feature %.64q%s", f, hint(f, names))
		}
	}
	_, given := v.pb.src.lines["trigger.min_contribution"]
	switch {
	case !(t.MinContribution >= 0 && t.MinContribution <= 1):
		v.bad("trigger.min_contribution", "must be in [0, 1] (a share of the window's surprise), got %g", t.MinContribution)
	case t.MinContribution == 0 && given:
		v.bad("trigger.min_contribution", "0 would let a feature that explains nothing match; leave it out for the default %g, or give a share such as 0.05", DefaultMinContribution)
	case (t.MinContribution > 0 || given) && len(t.Features) == 0:
		v.bad("trigger.min_contribution", "applies to features; list the features it is for")
	}
	for i, r := range t.Routes {
		if !strings.HasPrefix(r, "/") || strings.ContainsAny(r, " \t\r\n?#") {
			v.bad(fmt.Sprintf("trigger.routes[%d]", i), "want a route template such as /customers/{id}/export, got %.64q", r)
		}
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"trigger.roles", t.Roles}, {"trigger.owners", t.Owners}} {
		for i, s := range l.list {
			if s == "" || strings.TrimSpace(s) != s {
				v.bad(fmt.Sprintf("%s[%d]", l.key, i), "must be non-empty without leading or trailing spaces, got %.64q", s)
			}
		}
	}
	for k := range t.Labels {
		if k == "" || strings.TrimSpace(k) != k {
			v.bad("trigger.labels", "label name %.64q must be non-empty without leading or trailing spaces", k)
		}
	}
}

// has reports whether any of paths already has an error.
func (v *validator) has(paths ...string) bool {
	return slices.ContainsFunc(v.errs, func(e *FieldError) bool {
		return slices.ContainsFunc(paths, func(p string) bool { return within(e.Field, p) })
	})
}

func (v *validator) severity(path, s string) {
	if s != "" && !slices.Contains(severities, s) {
		v.bad(path, "must be one of %s, got %.64q", strings.Join(severities, ", "), s)
	}
}

func (v *validator) step(i int, st *Step) {
	p := fmt.Sprintf("steps[%d]", i)
	ks := st.kinds()
	switch len(ks) {
	case 0:
		v.bad(p, "needs its kind: one of %s", kindList(Kinds()))
		return
	case 1:
	default:
		v.bad(p, "has %s; one kind per step, so split it into %d steps", kindList(ks), len(ks))
		return
	}
	k := ks[0]
	kp := p + "." + string(k)
	switch {
	case st.TTL < 0:
		v.bad(p+".ttl", "must be positive, got %s", fmtDuration(st.TTL))
	case st.TTL > 0 && !k.Undoable():
		v.bad(p+".ttl", "%s cannot be undone; remove ttl (only revoke, throttle and quarantine take one)", k)
	case st.TTL == 0 && (k == KindThrottle || k == KindQuarantine):
		v.bad(p+".ttl", "required: a %s is temporary, so say for how long, e.g. ttl: 1h (use revoke to block for good)", k)
	case st.TTL > MaxTTL:
		v.bad(p+".ttl", "at most %s, got %s; use revoke to block for longer", fmtDuration(MaxTTL), fmtDuration(st.TTL))
	}
	if k.ActsOnAgent() && v.pb.Trigger != nil {
		for _, agg := range aggregateKinds {
			if v.pb.Trigger.kindMatches(agg) {
				v.bad(kp, "the trigger can match %s, which names no single agent (its agent_id is %s); list the kinds this playbook is for, or add exclude_kinds: [global_event, agent_flood]",
					agg, map[string]string{anomaly.GlobalEvent: "*global/FEATURE", anomaly.AgentFlood: "*flood/pPARTITION"}[agg])
				break
			}
		}
	}
	switch k {
	case KindNotify:
		n := st.Notify
		v.channel(kp+".channel", n.Channel)
		switch n.Mention {
		case "", MentionNone, MentionHere, MentionChannel:
		default:
			v.bad(kp+".mention", "must be none, here or channel (mention people with mention_ids), got %.64q", n.Mention)
		}
		v.slackIDs(kp+".mention_ids", n.MentionIDs)
		v.severity(kp+".mention_min_severity", n.MentionMinSeverity)
	case KindRevoke:
		v.adapter(kp+".adapter", st.Revoke.Adapter, AdapterKong, AdapterWebhook, AdapterDenylist)
	case KindThrottle:
		v.adapter(kp+".adapter", st.Throttle.Adapter, AdapterKong, AdapterWebhook)
		if st.Throttle.RatePerMinute <= 0 {
			v.bad(kp+".rate_per_minute", "required: the requests per minute the agent keeps, > 0, got %d", st.Throttle.RatePerMinute)
		}
	case KindQuarantine:
		v.adapter(kp+".adapter", st.Quarantine.Adapter, AdapterKong, AdapterWebhook, AdapterDenylist)
	case KindSnapshot:
		for _, f := range []struct {
			key string
			d   time.Duration
		}{{"before", st.Snapshot.Before}, {"after", st.Snapshot.After}} {
			if f.d < 0 || f.d > MaxWait {
				v.bad(kp+"."+f.key, "must be in [0, %s], got %s", fmtDuration(MaxWait), fmtDuration(f.d))
			}
		}
	case KindWebhook:
		if !targetRE.MatchString(st.Webhook.Target) {
			v.bad(kp+".target", "want the name of a target in the responder's webhook allow-list (lowercase letters, digits, '.', '-', '_'), got %.64q", st.Webhook.Target)
		}
	case KindApprove:
		a := st.Approve
		v.channel(kp+".channel", a.Channel)
		if a.Timeout <= 0 || a.Timeout > MaxWait {
			v.bad(kp+".timeout", "must be in (0, %s], got %s", fmtDuration(MaxWait), fmtDuration(a.Timeout))
		}
		if a.Default != DecisionApprove && a.Default != DecisionDeny {
			v.bad(kp+".default", "must be approve or deny (what happens when nobody answers in time), got %.64q", a.Default)
		}
		v.slackIDs(kp+".approvers", a.Approvers)
		if i == len(v.pb.Steps)-1 {
			v.bad(kp, "gates nothing: no step follows it; put it before the steps that need a human's yes")
		}
	}
}

func (v *validator) channel(path, c string) {
	switch {
	case c == "":
		v.bad(path, "required: a Slack channel, #name or an id such as C0123ABCD")
	case !channelRE.MatchString(c):
		v.bad(path, "want a Slack channel, #name (lowercase, digits, '-', '_') or an id such as C0123ABCD, got %.64q", c)
	}
}

func (v *validator) slackIDs(path string, ids []string) {
	for i, id := range ids {
		if !slackIDRE.MatchString(id) {
			v.bad(fmt.Sprintf("%s[%d]", path, i), "want a Slack user id (U…, W…) or user-group id (S…), got %.64q", id)
		}
	}
}

func (v *validator) adapter(path, a string, allowed ...string) {
	if slices.Contains(allowed, a) {
		return
	}
	if a == "" {
		v.bad(path, "required: one of %s", strings.Join(allowed, ", "))
		return
	}
	v.bad(path, "must be one of %s, got %.64q", strings.Join(allowed, ", "), a)
}

func kindList(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// hint returns `; did you mean "x"?` for the closest of known, or "".
func hint(s string, known []string) string {
	if k := suggest.Closest(s, known, 2); k != "" {
		return fmt.Sprintf("; did you mean %q?", k)
	}
	return "; known: " + strings.Join(known, ", ")
}
