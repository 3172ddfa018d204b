// Package slackui is the Slack face of the responder: it renders anomalies
// as Block Kit alerts an analyst can act on (Render, RenderFollowUp), posts
// them through slack-go (Poster), and takes the analysts' button clicks back
// through a signed, replay-proof interactivity endpoint
// (NewInteractionHandler).
//
// Every string that an attacker can influence (agent ids, owners, roles,
// routes, request ids, summaries, user agents, header values) is placed
// only in plain_text objects, escaped (&, <, > become &amp;, &lt;, &gt;) and
// length-capped, so it can never mention @channel, @here or a user, inject
// a link, or break the layout or Slack's Block Kit limits.
package slackui

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// Message is a rendered Slack message. It is a plain value; the blocks are
// not shared with anything else.
type Message struct {
	// Text is the notification and fallback text. Slack formats it as
	// mrkdwn, so it is escaped like every other text and has no "@" that
	// Slack could parse as a mention.
	Text   string
	Blocks []slack.Block
	// Marker, when set, is sent as the message's metadata (event type
	// MarkerEventType): the outbox key the message is posted for, by
	// which FindPosted finds it after a crash. Set it to the entry's key.
	Marker string
}

// Options returns the options that send m with chat.postMessage or
// chat.update: its text as is (already escaped; slack-go must not escape it
// twice), its blocks, no link or media unfurling and no name linking, so
// nothing in it is turned into a link or a mention by Slack; and its
// Marker as metadata.
func (m Message) Options() []slack.MsgOption {
	opts := []slack.MsgOption{
		slack.MsgOptionText(m.Text, false),
		slack.MsgOptionBlocks(m.Blocks...),
		slack.MsgOptionDisableLinkUnfurl(),
		slack.MsgOptionDisableMediaUnfurl(),
		slack.MsgOptionParse(false),
		slack.MsgOptionLinkNames(false),
	}
	if m.Marker != "" {
		opts = append(opts, slack.MsgOptionMetadata(slack.SlackMetadata{EventType: MarkerEventType, EventPayload: map[string]any{markerField: m.Marker}}))
	}
	return opts
}

// Detail is one extra piece of evidence shown with an alert, such as a user
// agent or a header value seen in the window. Label and Value are both
// treated as attacker-controlled.
type Detail struct {
	Label string
	Value string
}

// AlertContext is what the responder knows about an anomaly beyond the
// record itself.
type AlertContext struct {
	// IncidentID names the agent incident the alert belongs to; the buttons
	// carry it. Required unless HideActions.
	IncidentID string
	// SnapshotID is the evidence bundle's id, empty while none is taken.
	SnapshotID string
	// Codec signs the buttons' values; build it with NewActionCodec from the
	// same signing secret as the interaction handler. Required unless
	// HideActions.
	Codec *ActionCodec
	// Agents lists the agents involved in a grouped alert (global_event,
	// agent_flood), as many as the responder knows; the alert shows the
	// first ones and counts the rest.
	Agents []string
	// Details are extra evidence (user agents, header values), shown as is
	// after escaping; at most ten.
	Details []Detail
	// Status, when set, is shown under the alert, e.g. "Acknowledged by
	// alice"; use it with UpdateMessage after an action.
	Status string
	// HideActions leaves the buttons out (an incident that is closed).
	HideActions bool
	// Mention (here or channel) and MentionIDs (U…, W…, S…) are the notify
	// step's mentions, shown first in a first alert only (follow-ups stay
	// quiet). Values other than these are ignored.
	Mention    string
	MentionIDs []string
}

// How much of each list an alert shows.
const (
	topFeatures     = 5
	topRoutes       = 5
	topRequests     = 5
	followUpTop     = 3
	maxDetails      = 10
	maxAgentsListed = 40
	capAgentInList  = 64
	capFeatureName  = 64
	capSeverity     = 16
	capKind         = 32
	capStatus       = 300
)

// Grouped reports whether anomalies of kind stand for many agents at once
// (global_event, agent_flood). Their alerts are grouped: one alert for all
// agents, and no button that would revoke or quarantine anything.
func Grouped(kind string) bool {
	return kind == anomaly.GlobalEvent || kind == anomaly.AgentFlood
}

// Render returns the alert for the first anomaly of an incident, with the
// buttons acknowledge, mark false positive, revoke now, quarantine 1 h and
// snooze. A grouped kind (see Grouped) gets the grouped alert instead, with
// acknowledge, mark false positive and snooze only. Render fails only when
// ac cannot make valid buttons (no codec, a bad incident or anomaly id);
// nothing in a is ever refused.
func Render(a anomaly.Anomaly, ac AlertContext) (Message, error) {
	if Grouped(a.Kind) || a.Grouped() {
		m, err := renderGrouped(a, ac)
		return withMentions(m, ac), err
	}
	kind, sev := line(a.Kind, capKind), severityLabel(a.Severity)
	agent := line(a.AgentID, capID)
	blocks := []slack.Block{
		header(severityIcon(a.Severity) + " " + sev + " · " + kind + " · " + agent),
		slack.NewSectionBlock(plain(line(a.Summary, capSummary)), nil, nil, slack.SectionBlockOptionBlockID("aw_summary")),
	}
	facts := []*slack.TextBlockObject{
		field("Agent", a.AgentID, capID),
		field("Owner", a.Owner, capID),
		field("Role", a.Role, capID),
		field("Credential", a.CredentialID, capID),
		fieldOurs("Score", scoreText(a)),
		fieldOurs("Window (UTC)", windowText(a.WindowStartMs, a.WindowEndMs)),
		field("Incident", ac.IncidentID, capID),
		field("Evidence snapshot", orDefault(ac.SnapshotID, "not taken yet"), capID),
	}
	if a.PeerBaseline {
		facts = append(facts, fieldOurs("Baseline", "peer group (the agent is still warming up)"))
	}
	if a.Risk > 0 {
		facts = append(facts, fieldOurs("Agent risk", riskText(a)))
	}
	blocks = append(blocks, section("aw_facts", "", facts))
	blocks = append(blocks, evidenceBlocks(a, ac, topFeatures, topRoutes)...)
	blocks = append(blocks, footer(a, ac))
	if !ac.HideActions {
		actions, err := buttons(a, ac, Acknowledge, FalsePositive, Revoke, Quarantine, Snooze)
		if err != nil {
			return Message{}, fmt.Errorf("render alert for anomaly %s: %w", line(a.ID, capID), err)
		}
		blocks = append(blocks, actions)
	}
	text := fmt.Sprintf("%s %s anomaly: agent %s (score %s)", sev, kind, agent, fmtNum(a.Score))
	return withMentions(finish(text, blocks), ac), nil
}

// RenderFollowUp returns the shorter message posted into an incident's
// thread for a later anomaly of the same agent (or group): what happened,
// the top three features and routes, sample requests, and one button, mark
// false positive, for this anomaly alone. The incident's other buttons stay
// on the first alert.
func RenderFollowUp(a anomaly.Anomaly, ac AlertContext) (Message, error) {
	kind, sev := line(a.Kind, capKind), severityLabel(a.Severity)
	head := fmt.Sprintf("%s %s · %s · score %s · %s UTC", severityIcon(a.Severity), sev, kind,
		fmtNum(a.Score), windowText(a.WindowStartMs, a.WindowEndMs))
	if a.Risk > 0 {
		head += " · agent risk " + fmtRisk(a.Risk)
	}
	var fields []*slack.TextBlockObject
	for _, f := range first(a.Explanation, followUpTop) {
		fields = append(fields, featureField(f, a.WindowEndMs-a.WindowStartMs))
	}
	for _, r := range first(a.Routes, followUpTop) {
		fields = append(fields, routeField(r))
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(plain(head+"\n"+line(a.Summary, capSummary)), nilIfEmpty(fields), nil,
			slack.SectionBlockOptionBlockID("aw_followup")),
	}
	if len(a.SampleRequestIDs) > 0 {
		ids := cleanAll(first(a.SampleRequestIDs, topRequests), capID)
		blocks = append(blocks, slack.NewContextBlock("aw_requests",
			plain("Sample requests: "+join(ids, ", ", maxText-20))))
	}
	blocks = append(blocks, footer(a, ac))
	if !ac.HideActions {
		actions, err := buttons(a, ac, FalsePositive)
		if err != nil {
			return Message{}, fmt.Errorf("render follow-up for anomaly %s: %w", line(a.ID, capID), err)
		}
		blocks = append(blocks, actions)
	}
	text := fmt.Sprintf("Follow-up: %s %s anomaly, agent %s (score %s)", sev, kind, line(a.AgentID, capID), fmtNum(a.Score))
	return finish(text, blocks), nil
}

// renderGrouped is the one alert for an anomaly that stands for many agents.
// It never offers revoke or quarantine: a button must not act on an
// unbounded set of agents.
func renderGrouped(a anomaly.Anomaly, ac AlertContext) (Message, error) {
	kind, sev := line(a.Kind, capKind), severityLabel(a.Severity)
	what := groupName(a)
	agents := ac.Agents
	if len(agents) == 0 {
		// The record's own list (a folded shadow_agent, an agent_flood):
		// capped by the detector, so Count says how many in all.
		agents = a.AgentIDs
	}
	title := fmt.Sprintf("%s %s · %s · %d agents", severityIcon(a.Severity), sev, what, max(a.Count, len(agents)))
	countFact := fieldOurs("Agents in the first window", strconv.Itoa(a.Count))
	if a.Kind == anomaly.FleetGauge {
		// A partition's summed calls or 5xx: its count is that sum, not
		// agents; the explanation below says what was expected.
		title = fmt.Sprintf("%s %s · fleet gauge · partition %d", severityIcon(a.Severity), sev, a.Partition)
		countFact = fieldOurs("Observed in the window", strconv.Itoa(a.Count))
	}
	facts := []*slack.TextBlockObject{
		field("Kind", a.Kind, capKind),
		field("Group", a.AgentID, capID),
		fieldOurs("Score", scoreText(a)),
		fieldOurs("Window (UTC)", windowText(a.WindowStartMs, a.WindowEndMs)),
		countFact,
		fieldOurs("Partition", strconv.Itoa(int(a.Partition))),
		field("Incident", ac.IncidentID, capID),
		field("Evidence snapshot", orDefault(ac.SnapshotID, "not taken yet"), capID),
	}
	if a.CredentialID != "" {
		// A shadow-agent group formed around one credential: the thing to
		// revoke, by hand, after a look.
		facts = append(facts, field("Credential", a.CredentialID, capID))
	}
	blocks := []slack.Block{
		header(title),
		slack.NewSectionBlock(plain(line(a.Summary, capSummary)), nil, nil, slack.SectionBlockOptionBlockID("aw_summary")),
		section("aw_facts", "", facts),
	}
	if len(agents) > 0 {
		total := max(a.Count, len(agents))
		shown := cleanAll(first(agents, maxAgentsListed), capAgentInList)
		list := join(shown, ", ", maxText-80)
		head := fmt.Sprintf("Agents involved (%d):", total)
		if total > len(shown) {
			list += fmt.Sprintf(" and %d more", total-len(shown))
		}
		blocks = append(blocks, slack.NewSectionBlock(plain(head+"\n"+list), nil, nil,
			slack.SectionBlockOptionBlockID("aw_agents")))
	}
	blocks = append(blocks, evidenceBlocks(a, ac, topFeatures, topRoutes)...)
	blocks = append(blocks, footer(a, ac))
	if !ac.HideActions {
		actions, err := buttons(a, ac, Acknowledge, FalsePositive, Snooze)
		if err != nil {
			return Message{}, fmt.Errorf("render grouped alert for anomaly %s: %w", line(a.ID, capID), err)
		}
		blocks = append(blocks, actions)
	}
	text := fmt.Sprintf("%s %s: %s (score %s)", sev, what, kind, fmtNum(a.Score))
	return finish(text, blocks), nil
}

// groupName says what a grouped anomaly stands for.
func groupName(a anomaly.Anomaly) string {
	switch a.Kind {
	case anomaly.AgentFlood:
		return "agent flood"
	case anomaly.ShadowAgent:
		return "shadow agents"
	case anomaly.FleetGauge:
		return "fleet gauge"
	}
	return "global event"
}

// evidenceBlocks shows what was anomalous, the top routes, sample requests,
// new source addresses and the context's details.
func evidenceBlocks(a anomaly.Anomaly, ac AlertContext, nFeatures, nRoutes int) []slack.Block {
	var blocks []slack.Block
	var what []*slack.TextBlockObject
	for _, f := range first(a.Explanation, nFeatures) {
		what = append(what, featureField(f, a.WindowEndMs-a.WindowStartMs))
	}
	if a.Count > 0 && !Grouped(a.Kind) && !a.Grouped() {
		what = append(what, fieldOurs("Calls hitting the rule", strconv.Itoa(a.Count)))
	}
	if len(a.SourceIPs) > 0 {
		ips := cleanAll(first(a.SourceIPs, 20), capID)
		what = append(what, fieldOurs("New source addresses", join(ips, ", ", maxField-40)))
	}
	if len(what) > 0 {
		head := "*What was anomalous*"
		if len(a.Explanation) > nFeatures {
			head = fmt.Sprintf("*What was anomalous* (top %d of %d features)", nFeatures, len(a.Explanation))
		}
		blocks = append(blocks, section("aw_what", head, what))
	}
	if len(a.Routes) > 0 {
		var rs []*slack.TextBlockObject
		for _, r := range first(a.Routes, nRoutes) {
			rs = append(rs, routeField(r))
		}
		blocks = append(blocks, section("aw_routes", "*Top routes*", rs))
	}
	if len(a.SampleRequestIDs) > 0 {
		var ids []*slack.TextBlockObject
		for _, id := range first(a.SampleRequestIDs, topRequests) {
			ids = append(ids, plain(line(id, capID)))
		}
		blocks = append(blocks, section("aw_requests", "*Sample requests*", ids))
	}
	if len(ac.Details) > 0 {
		var ds []*slack.TextBlockObject
		for _, d := range first(ac.Details, maxDetails) {
			ds = append(ds, plain(line(d.Label, capID)+"\n"+line(d.Value, capDetail)))
		}
		blocks = append(blocks, section("aw_details", "*Evidence*", ds))
	}
	return blocks
}

func footer(a anomaly.Anomaly, ac AlertContext) slack.Block {
	s := "anomaly " + line(a.ID, capID)
	if a.DetectedMs > 0 {
		s += " · detected " + time.UnixMilli(a.DetectedMs).UTC().Format("2006-01-02 15:04:05") + " UTC"
	}
	s += " · partition " + strconv.Itoa(int(a.Partition))
	elems := []slack.MixedElement{plain(s)}
	if ac.Status != "" {
		elems = append(elems, plain(line(ac.Status, capStatus)))
	}
	return slack.NewContextBlock("aw_footer", elems...)
}

// buttons makes the action block with one button per kind, in order.
func buttons(a anomaly.Anomaly, ac AlertContext, kinds ...ActionKind) (*slack.ActionBlock, error) {
	if ac.Codec == nil {
		return nil, errors.New("no action codec in the alert context; set AlertContext.Codec or HideActions")
	}
	var elems []slack.BlockElement
	for _, k := range kinds {
		v, err := ac.Codec.Encode(ActionRef{Kind: k, IncidentID: ac.IncidentID, AnomalyID: a.ID})
		if err != nil {
			return nil, err
		}
		b := slack.NewButtonBlockElement(slackActionID[k], v, plain(buttonLabel(k)))
		switch k {
		case Acknowledge:
			b = b.WithStyle(slack.StylePrimary)
		case Revoke:
			b = b.WithStyle(slack.StyleDanger).WithConfirm(confirm("Revoke credential?",
				"Revoke credential "+line(orDefault(a.CredentialID, "(looked up by the responder)"), capAgentInList)+
					" of agent "+line(a.AgentID, capAgentInList)+" now? Its calls fail until someone restores it.",
				"Revoke"))
		case Quarantine:
			b = b.WithStyle(slack.StyleDanger).WithConfirm(confirm("Quarantine agent?",
				"Block agent "+line(a.AgentID, capAgentInList)+" at the gateway for 1 hour? It is restored automatically.",
				"Quarantine"))
		}
		elems = append(elems, b)
	}
	return slack.NewActionBlock("aw_actions", elems...), nil
}

func buttonLabel(k ActionKind) string {
	switch k {
	case Acknowledge:
		return "Acknowledge"
	case FalsePositive:
		return "Mark false positive"
	case Approve:
		return "Approve"
	case Deny:
		return "Deny"
	case Revoke:
		return "Revoke now"
	case Quarantine:
		return "Quarantine 1 h"
	case Snooze:
		return "Snooze"
	}
	return string(k)
}

func confirm(title, text, ok string) *slack.ConfirmationBlockObject {
	return slack.NewConfirmationBlockObject(plain(title), plain(capCleaned(text, maxConfirmText)), plain(ok), plain("Cancel"))
}

// finish caps the block count and sets the fallback text.
func finish(text string, blocks []slack.Block) Message {
	if len(blocks) > maxBlocks { // cannot happen with today's layout; keep the buttons if it ever does
		blocks = append(blocks[:maxBlocks-1], blocks[len(blocks)-1])
	}
	return Message{Text: fallbackText(capCleaned(text, maxFallback)), Blocks: blocks}
}

func header(cleaned string) *slack.HeaderBlock {
	return slack.NewHeaderBlock(plain(capCleaned(cleaned, maxHeader)), slack.HeaderBlockOptionBlockID("aw_header"))
}

// section makes a section with an optional mrkdwn heading (our own text
// only, never input) and plain_text fields.
func section(id, mrkdwnHeading string, fields []*slack.TextBlockObject) *slack.SectionBlock {
	var text *slack.TextBlockObject
	if mrkdwnHeading != "" {
		text = slack.NewTextBlockObject(slack.MarkdownType, mrkdwnHeading, false, true)
	}
	return slack.NewSectionBlock(text, first(fields, maxFields), nil, slack.SectionBlockOptionBlockID(id))
}

// plain wraps already-cleaned text in a plain_text object. emoji is false so
// that ":shortcodes:" in input are shown as typed.
func plain(cleaned string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, cleaned, false, false)
}

// field is a "Label\nvalue" section field for an untrusted value.
func field(label, value string, maxValue int) *slack.TextBlockObject {
	return plain(label + "\n" + line(value, min(maxValue, maxField-len(label)-1)))
}

// fieldOurs is a section field whose value we formatted ourselves (numbers,
// times, or text already cleaned).
func fieldOurs(label, value string) *slack.TextBlockObject {
	return plain(capCleaned(label+"\n"+value, maxField))
}

// featureField shows a feature in its unit (features.FormatVersus) for a
// window widthMs wide.
func featureField(f anomaly.Feature, widthMs int64) *slack.TextBlockObject {
	return fieldOurs(line(f.Name, capFeatureName), fmt.Sprintf("%s · %s of the surprise",
		features.FormatVersus(f.Name, f.Observed, f.Expected, widthMs), fmtPct(f.Contribution)))
}

func routeField(r anomaly.RouteCount) *slack.TextBlockObject {
	if r.Succeeded > 0 {
		return fieldOurs(line(r.Route, capRoute), fmt.Sprintf("%d calls, %d answered 2xx", r.Calls, r.Succeeded))
	}
	return fieldOurs(line(r.Route, capRoute), fmt.Sprintf("%d calls", r.Calls))
}

// capCleaned caps text that is already escaped (or ours) at max UTF-16
// units, never cutting inside an escape (&amp; &lt; &gt;).
func capCleaned(s string, max int) string {
	if utf16Len(s) <= max {
		return s
	}
	n, keep := 0, 0
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		if s[i] == '&' {
			if j := strings.IndexByte(s[i:], ';'); j > 0 && j <= len("&amp") {
				size = j + 1
			}
		}
		tn := utf16Len(s[i : i+size])
		if n+tn > max-1 { // keep one unit for the ellipsis
			break
		}
		n += tn
		i += size
		keep = i
	}
	return strings.TrimRight(s[:keep], " \n") + ellipsis
}

func cleanAll(ss []string, max int) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = line(s, max)
	}
	return out
}

func first[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func nilIfEmpty(f []*slack.TextBlockObject) []*slack.TextBlockObject {
	if len(f) == 0 {
		return nil
	}
	return f
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func severityLabel(s string) string {
	return line(strings.ToUpper(orDefault(s, "unknown")), capSeverity)
}

func severityIcon(s string) string {
	switch s {
	case "critical":
		return "🔴"
	case "high":
		return "🟠"
	case "medium":
		return "🟡"
	case "low":
		return "🔵"
	}
	return "⚪"
}

func scoreText(a anomaly.Anomaly) string {
	return fmtNum(a.Score) + " (" + strings.ToLower(severityLabel(a.Severity)) + ")"
}

// riskText says where the agent's risk stands after a: its value against
// the detector's level and, when at or above it, since when and until when
// at least (the time its decay alone keeps it there).
func riskText(a anomaly.Anomaly) string {
	s := fmtRisk(a.Risk)
	if !(a.RiskLevel > 0) {
		return s
	}
	s += " (level " + fmtRisk(a.RiskLevel) + ")"
	if a.RiskAboveSinceMs > 0 && a.RiskAboveUntilMs > a.RiskAboveSinceMs {
		s += ", at or above it since " + clockText(a.RiskAboveSinceMs) + " UTC and until at least " + clockText(a.RiskAboveUntilMs) + " UTC"
	} else {
		s += ", below it"
	}
	return s
}

// fmtRisk shows a risk with one decimal, as the detector's elevated_risk
// summary does.
func fmtRisk(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func windowText(startMs, endMs int64) string {
	if startMs <= 0 {
		return "unknown"
	}
	start := time.UnixMilli(startMs).UTC()
	s := start.Format("2006-01-02 15:04:05")
	if endMs > startMs {
		end := time.UnixMilli(endMs).UTC()
		if end.Format(time.DateOnly) == start.Format(time.DateOnly) {
			s += "–" + end.Format("15:04:05")
		} else {
			s += " – " + end.Format("2006-01-02 15:04:05")
		}
	}
	return s
}

// fmtNum shows a feature value or score compactly: integers as integers,
// others with three significant digits.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100 && math.Abs(v) < 1e12:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func fmtPct(share float64) string {
	if math.IsNaN(share) || math.IsInf(share, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(share*100, 'f', 0, 64) + "%"
}
