package slackui

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
)

// Incident statuses a card shows.
const (
	StatusOpen          = "open"
	StatusAcknowledged  = "acknowledged"
	StatusContained     = "contained"
	StatusRestored      = "restored"
	StatusFalsePositive = "false positive"
	StatusSilenced      = "silenced"
)

// KindCount is how many anomalies of one kind an incident (or a digest)
// holds.
type KindCount struct {
	Kind string
	N    int
}

// CardAction is one action taken on an incident, as the card lists it.
// Text is treated as untrusted (it names analysts and credentials).
type CardAction struct {
	AtMs int64
	Text string
}

// Card is what an incident's top-level message shows: the incident as it
// stands, rendered again (chat.update) whenever it changes. Every string
// that comes from an anomaly or a person is escaped like the alert's.
type Card struct {
	// Status is one of the Status constants.
	Status string
	// Severity is the highest severity of the incident's anomalies.
	Severity string
	// Class is attack.Describe of the incident's lead class.
	Class attack.Info
	// Count is every anomaly that joined; Kinds breaks it down.
	Count int
	Kinds []KindCount
	// FirstMs and LastMs are when the first and the latest anomaly joined.
	FirstMs, LastMs int64
	// Lead is the anomaly the card shows in detail, and the one its
	// buttons name.
	Lead anomaly.Anomaly
	// Actions are the actions taken, oldest first; the card shows the
	// latest maxCardActions.
	Actions []CardAction
	// Risk is the agent's risk over the incident; the card shows it when
	// any of its anomalies carried one.
	Risk RiskTrend
}

// RiskTrend is an agent's risk (anomaly.Anomaly.Risk) over an incident:
// the value after each of its latest anomalies and the highest. The
// responder keeps it with the incident.
type RiskTrend struct {
	// Level is the detector's risk level, as the latest anomaly said.
	Level float64 `json:"level,omitempty"`
	// Peak is the highest risk of the incident's anomalies.
	Peak float64 `json:"peak,omitempty"`
	// Points are the risk after each of the latest anomalies that carried
	// one, oldest first, at most MaxRiskPoints.
	Points []RiskPoint `json:"points,omitempty"`
	// AboveSinceMs and AboveUntilMs are the latest anomaly's: since when
	// the risk has been at or above Level, and until when at least it
	// stays there; 0 when below.
	AboveSinceMs int64 `json:"above_since_ms,omitempty"`
	AboveUntilMs int64 `json:"above_until_ms,omitempty"`
}

// RiskPoint is the agent's risk after one anomaly, at its window end.
type RiskPoint struct {
	AtMs int64   `json:"at_ms"`
	Risk float64 `json:"risk"`
}

// MaxRiskPoints is how many risk values a RiskTrend keeps.
const MaxRiskPoints = 6

// Observe adds a's risk to the trend; an anomaly without a risk changes
// nothing, and neither does one that repeats a point (an elevated_risk
// carries the risk of the anomaly that raised it). Points stay in window
// order whatever the arrival order.
func (r *RiskTrend) Observe(a anomaly.Anomaly) {
	if !(a.Risk > 0) || math.IsInf(a.Risk, 0) {
		return
	}
	p := RiskPoint{AtMs: a.WindowEndMs, Risk: a.Risk}
	if slices.Contains(r.Points, p) {
		return
	}
	i := len(r.Points)
	for i > 0 && r.Points[i-1].AtMs > p.AtMs {
		i--
	}
	if i == 0 && len(r.Points) == MaxRiskPoints {
		return // older than everything kept
	}
	newest := i == len(r.Points)
	r.Points = slices.Insert(r.Points, i, p)
	if len(r.Points) > MaxRiskPoints {
		r.Points = slices.Delete(r.Points, 0, 1)
	}
	r.Peak = max(r.Peak, a.Risk)
	if newest { // its level and episode are the current ones
		r.Level, r.AboveSinceMs, r.AboveUntilMs = a.RiskLevel, a.RiskAboveSinceMs, a.RiskAboveUntilMs
	}
}

// trendText is the card's risk line: the latest risk with an arrow for
// its direction since the previous anomaly, the level, the values before
// it, the peak and the episode above the level.
func (r RiskTrend) trendText() string {
	n := len(r.Points)
	last := r.Points[n-1].Risk
	arrow := ""
	if n > 1 {
		switch prev := r.Points[n-2].Risk; {
		case last > prev:
			arrow = " ↑"
		case last < prev:
			arrow = " ↓"
		default:
			arrow = " →"
		}
	}
	s := fmtRisk(last) + arrow
	if r.Level > 0 {
		s += " (level " + fmtRisk(r.Level) + ")"
	}
	if n > 1 {
		vs := make([]string, n)
		for i, p := range r.Points {
			vs[i] = fmtRisk(p.Risk)
		}
		s += "; at its latest anomalies " + strings.Join(vs, " → ")
		if r.Peak > last {
			s += ", peak " + fmtRisk(r.Peak)
		}
	}
	if r.AboveSinceMs > 0 && r.AboveUntilMs > r.AboveSinceMs {
		s += "; at or above the level since " + clockText(r.AboveSinceMs) + " UTC, until at least " + clockText(r.AboveUntilMs) + " UTC"
	}
	return s
}

// How much of an incident a card and a digest show.
const (
	maxCardActions = 9
	maxCardKinds   = 6
	digestTop      = 3
	maxNewRoutes   = 5
	capAction      = 300
	capClassLine   = 600
)

// RenderCard returns an incident's card: a header with the highest
// severity and the attack class, the incident's status, counts and times,
// what the class usually means and what to check first (with its
// references), the lead anomaly's evidence, the actions taken, and the
// alert's buttons (on the lead anomaly). ac's Mention applies as in Render.
// It fails only when ac cannot make valid buttons.
func RenderCard(c Card, ac AlertContext) (Message, error) {
	mention := ac
	ac.Mention, ac.MentionIDs = "", nil
	base, err := Render(c.Lead, ac)
	if err != nil {
		return Message{}, fmt.Errorf("render card: %w", err)
	}
	sev := severityLabel(c.Severity)
	title := classTitle(c.Class)
	who := line(c.Lead.AgentID, capID)
	if Grouped(c.Lead.Kind) || c.Lead.Grouped() {
		who = groupName(c.Lead)
	}
	facts := []*slack.TextBlockObject{
		fieldOurs("Status", strings.ToUpper(orDefault(c.Status, StatusOpen))),
		fieldOurs("Highest severity", sev),
		fieldOurs("Attack class", title),
		fieldOurs("Anomalies", countText(c.Count, c.Kinds)),
		fieldOurs("First seen (UTC)", timeText(c.FirstMs)),
		fieldOurs("Last seen (UTC)", timeText(c.LastMs)),
	}
	if len(c.Risk.Points) > 0 {
		facts = append(facts, fieldOurs("Agent risk", c.Risk.trendText()))
	}
	blocks := []slack.Block{
		header(severityIcon(c.Severity) + " " + sev + " · " + title + " · " + who),
		section("aw_card", "", facts),
	}
	blocks = append(blocks, classBlocks(c.Class)...)
	for _, b := range base.Blocks {
		switch b.ID() {
		case "aw_header":
			continue
		case "aw_footer":
			blocks = append(blocks, actionsBlock(c.Actions))
		}
		blocks = append(blocks, b)
	}
	status := strings.ToUpper(orDefault(c.Status, StatusOpen))
	text := fmt.Sprintf("%s %s: agent %s, %s, %s", sev, title, who, anomalies(c.Count), status)
	return withMentions(finish(text, blocks), mention), nil
}

// classTitle is the class's human name, or a plain word when the
// description has none.
func classTitle(in attack.Info) string {
	t := in.Title
	if t == "" {
		t = string(in.Class)
	}
	if t == "" || in.Class == attack.Unclassified && in.Title == string(attack.Unclassified) {
		t = "Unclassified anomaly"
	}
	return line(t, capKind*2)
}

// classBlocks say what the class usually means, what to check first, and
// the catalogue entries it fits.
func classBlocks(in attack.Info) []slack.Block {
	var parts []string
	if in.Meaning != "" {
		parts = append(parts, "What this usually means: "+line(in.Meaning, capClassLine))
	}
	if in.CheckFirst != "" {
		parts = append(parts, "Check first: "+line(in.CheckFirst, capClassLine))
	}
	var blocks []slack.Block
	if len(parts) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(plain(strings.Join(parts, "\n")), nil, nil, slack.SectionBlockOptionBlockID("aw_class")))
	}
	var refs []string
	for _, r := range in.Refs {
		s := strings.TrimSpace(line(r.Catalogue, capID) + " " + line(r.ID, capID))
		if r.Title != "" {
			s += " " + line(r.Title, capID)
		}
		refs = append(refs, s)
	}
	if len(refs) > 0 {
		blocks = append(blocks, slack.NewContextBlock("aw_refs", plain(capCleaned("References: "+strings.Join(refs, " · "), maxText))))
	}
	return blocks
}

func actionsBlock(as []CardAction) slack.Block {
	if len(as) == 0 {
		return slack.NewContextBlock("aw_taken", plain("Actions taken: none yet"))
	}
	shown := as
	if len(shown) > maxCardActions {
		shown = shown[len(shown)-maxCardActions:]
	}
	var fields []*slack.TextBlockObject
	for _, a := range shown {
		fields = append(fields, plain(clockText(a.AtMs)+" "+line(a.Text, capAction)))
	}
	if n := len(as) - len(shown); n > 0 {
		fields = append(fields, plain(fmt.Sprintf("and %d earlier ones: responder audit lists them all", n)))
	}
	return section("aw_taken", "*Actions taken*", fields)
}

func countText(n int, kinds []KindCount) string {
	s := strconv.Itoa(n)
	if len(kinds) == 0 {
		return s
	}
	var ks []string
	for _, k := range first(kinds, maxCardKinds) {
		ks = append(ks, line(k.Kind, capKind)+" "+strconv.Itoa(k.N))
	}
	if len(kinds) > maxCardKinds {
		ks = append(ks, fmt.Sprintf("%d more kinds", len(kinds)-maxCardKinds))
	}
	return s + " (" + strings.Join(ks, ", ") + ")"
}

func timeText(ms int64) string {
	if ms <= 0 {
		return "unknown"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
}

func clockText(ms int64) string {
	if ms <= 0 {
		return "--:--"
	}
	return time.UnixMilli(ms).UTC().Format("15:04")
}

// SortKinds orders kind counts most first, then by name: the order the
// card and the digest list them in.
func SortKinds(ks []KindCount) {
	slices.SortFunc(ks, func(a, b KindCount) int {
		if a.N != b.N {
			return b.N - a.N
		}
		return strings.Compare(a.Kind, b.Kind)
	})
}

// Escalation is a severity step of an incident, announced at the top level
// of the channel with the notify step's mentions.
type Escalation struct {
	IncidentID string
	From, To   string
	Class      attack.Info
	// AgentID is the incident's agent (or group).
	AgentID string
	// CardMs is when the incident's card was posted, so the analyst finds
	// it (the card is the top of the incident's thread).
	CardMs int64
}

// RenderEscalation returns the top-level message of a severity step: who
// must look (ac's Mention, MentionIDs), what rose to what, and where the
// card is. It has no buttons: they are on the card.
func RenderEscalation(e Escalation, ac AlertContext) Message {
	to, from := severityLabel(e.To), severityLabel(e.From)
	title := classTitle(e.Class)
	agent := line(e.AgentID, capID)
	where := "Its card, at the top of the incident's thread, is kept current; follow-ups stay in the thread."
	if e.CardMs > 0 {
		where = "Its card, posted at " + time.UnixMilli(e.CardMs).UTC().Format("15:04") +
			" UTC and at the top of the incident's thread, is kept current; follow-ups stay in the thread."
	}
	blocks := []slack.Block{
		header(severityIcon(e.To) + " Escalated to " + to + " · " + title + " · " + agent),
		slack.NewSectionBlock(plain("Incident "+line(e.IncidentID, capID)+" rose from "+from+" to "+to+". "+where), nil, nil,
			slack.SectionBlockOptionBlockID("aw_escalation")),
	}
	text := fmt.Sprintf("Escalated to %s: %s, agent %s (incident %s)", to, title, agent, line(e.IncidentID, capID))
	return withMentions(finish(text, blocks), ac)
}

// Digest is what is new in an incident since its thread's last summary.
type Digest struct {
	IncidentID string
	AgentID    string
	// FromMs is the previous summary (or the card), ToMs the latest
	// anomaly.
	FromMs, ToMs int64
	// New is how many anomalies joined since; Kinds breaks it down.
	New   int
	Kinds []KindCount
	// Severity is the incident's highest severity now.
	Severity string
	// Features are the features most often anomalous since, each at its
	// highest observed value (in a window of its WindowMs); Routes the
	// routes called most since, with the calls since; NewRoutes the
	// routes first seen since.
	Features  []DigestFeature
	Routes    []anomaly.RouteCount
	NewRoutes []string
}

// DigestFeature is a feature at its highest in an incident, in a window
// WindowMs wide (which its rate is shown per).
type DigestFeature struct {
	anomaly.Feature
	WindowMs int64
}

// RenderDigest returns the summary follow-up of an incident's thread. It
// has no buttons: the card has them.
func RenderDigest(d Digest) Message {
	head := fmt.Sprintf("%s %s between %s and %s UTC: %s · highest severity %s",
		severityIcon(d.Severity), moreAnomalies(d.New), clockText(d.FromMs), clockText(d.ToMs), kindsText(d.Kinds), severityLabel(d.Severity))
	var fields []*slack.TextBlockObject
	for _, f := range first(d.Features, digestTop) {
		fields = append(fields, featureField(f.Feature, f.WindowMs))
	}
	for _, r := range first(d.Routes, digestTop) {
		fields = append(fields, routeField(r))
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(plain(head), nilIfEmpty(fields), nil, slack.SectionBlockOptionBlockID("aw_digest")),
	}
	if len(d.NewRoutes) > 0 {
		rs := cleanAll(first(d.NewRoutes, maxNewRoutes), capRoute)
		s := "Routes new to this incident: " + join(rs, ", ", maxText-80)
		if len(d.NewRoutes) > maxNewRoutes {
			s += fmt.Sprintf(" and %d more", len(d.NewRoutes)-maxNewRoutes)
		}
		blocks = append(blocks, slack.NewContextBlock("aw_newroutes", plain(s)))
	}
	blocks = append(blocks, slack.NewContextBlock("aw_footer", plain("incident "+line(d.IncidentID, capID)+
		" · one summary per interval; a new attack class, an escalation, an approval request and an action's result post at once")))
	text := fmt.Sprintf("Summary: %s of agent %s (%s)", moreAnomalies(d.New), line(d.AgentID, capID), kindsText(d.Kinds))
	return finish(text, blocks)
}

func moreAnomalies(n int) string {
	if n == 1 {
		return "1 more anomaly"
	}
	return strconv.Itoa(n) + " more anomalies"
}

func anomalies(n int) string {
	if n == 1 {
		return "1 anomaly"
	}
	return strconv.Itoa(n) + " anomalies"
}

func kindsText(ks []KindCount) string {
	var parts []string
	for _, k := range first(ks, maxCardKinds) {
		parts = append(parts, line(k.Kind, capKind)+" "+strconv.Itoa(k.N))
	}
	if len(ks) > maxCardKinds {
		parts = append(parts, fmt.Sprintf("%d more kinds", len(ks)-maxCardKinds))
	}
	if len(parts) == 0 {
		return "no kind"
	}
	return strings.Join(parts, ", ")
}
