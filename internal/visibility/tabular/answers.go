package tabular

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Column caps in the terminal table, in runes.
const (
	capAgent  = 64
	capRoute  = 64
	capList   = 80
	capDetail = 160
)

// Write writes an answer of the visibility service in format f. v is one
// of []visibility.AgentRow, []visibility.RouteRow,
// []visibility.AgentRouteRow, []visibility.Finding,
// visibility.AccessAnswer, visibility.AgentProfile,
// visibility.RouteProfile or []event.Event. JSON is the answer itself;
// the table and CSV are its Tables (a profile's CSV is its main table:
// the agent's timeline, the route's callers per day).
func Write(w io.Writer, f Format, v any) error {
	if f == FormatJSON {
		return WriteJSON(w, v)
	}
	ts, err := Tables(v)
	if err != nil {
		return err
	}
	if f == FormatCSV {
		return WriteCSV(w, ts[len(ts)-1])
	}
	return WriteTables(w, ts...)
}

// Tables renders an answer (see Write) as tables. For a profile, the
// last table is the main one (what CSV gets).
func Tables(v any) ([]Table, error) {
	switch a := v.(type) {
	case []visibility.AgentRow:
		return []Table{Agents(a)}, nil
	case []visibility.RouteRow:
		return []Table{Routes(a)}, nil
	case []visibility.AgentRouteRow:
		return []Table{AgentRoutes(a)}, nil
	case []visibility.Finding:
		return []Table{Findings(a)}, nil
	case visibility.AccessAnswer:
		return []Table{Access(a)}, nil
	case []event.Event:
		return []Table{Events(a)}, nil
	case visibility.AgentProfile:
		return AgentProfile(a), nil
	case visibility.RouteProfile:
		return RouteProfile(a), nil
	}
	return nil, fmt.Errorf("tabular: no table for %T", v)
}

// Agents is the agent inventory table.
func Agents(rows []visibility.AgentRow) Table {
	t := Table{
		Header: []string{"AGENT", "LIFECYCLE", "REGISTERED", "OWNER", "ROLE", "FIRST_SEEN", "LAST_SEEN", "CALLS", "ROUTES",
			"APPROVED", "UNAPPROVED", "4XX", "5XX", "BYTES_OUT", "CREDENTIALS", "SOURCE_IPS"},
		Caps: []int{capAgent, 0, 0, capAgent},
	}
	for _, r := range rows {
		approved := ""
		if r.ApprovedRoutes >= 0 {
			approved = num(r.ApprovedRoutes)
		}
		t.Rows = append(t.Rows, []string{r.AgentID, string(r.Lifecycle), yesNo(r.Registered), r.Owner, r.Role,
			ms(r.FirstSeenMs), ms(r.LastSeenMs), u64(r.Calls), num(r.Routes), approved, num(r.UnapprovedRoutes),
			u64(r.Status.S4xx), u64(r.Status.S5xx), u64(r.ResponseBytes), num(r.CredentialCount), num(r.SourceIPCount)})
	}
	return t
}

// Routes is the route inventory table.
func Routes(rows []visibility.RouteRow) Table {
	t := Table{
		Header: []string{"ROUTE", "DOCUMENTED", "DEPRECATED", "SENSITIVE", "TAGS", "CALLS", "CALLERS", "FIRST_CALL", "LAST_CALL", "4XX", "BYTES_OUT", "TOP_CALLERS"},
		Caps:   []int{capRoute, 0, 0, 0, capList, 0, 0, 0, 0, 0, 0, capList},
	}
	for _, r := range rows {
		t.Rows = append(t.Rows, []string{r.Route, yesNo(r.Documented), yesNo(r.Deprecated), yesNo(r.Sensitive), strings.Join(r.Tags, " "),
			u64(r.Calls), num(r.CallerCount), ms(r.FirstMs), ms(r.LastMs), u64(r.Status.S4xx), u64(r.ResponseBytes), strings.Join(r.Callers, " ")})
	}
	return t
}

// AgentRoutes is the agent × route table.
func AgentRoutes(rows []visibility.AgentRouteRow) Table {
	t := Table{Header: []string{"AGENT", "ROUTE", "GRANT", "CALLS", "4XX", "FIRST_CALL", "LAST_CALL"}, Caps: []int{capAgent, capRoute}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []string{r.AgentID, r.Route, grant(r), u64(r.Calls), u64(r.Status.S4xx), ms(r.FirstMs), ms(r.LastMs)})
	}
	return t
}

// grant says whether the registry approves the pair.
func grant(r visibility.AgentRouteRow) string {
	switch {
	case r.Approved:
		return "approved"
	case r.Known:
		return "unapproved"
	}
	return "no list"
}

// Findings is the findings table.
func Findings(fs []visibility.Finding) Table {
	t := Table{Header: []string{"KIND", "AGENT", "ROUTE", "OWNER", "DETAIL"}, Caps: []int{0, capAgent, capRoute, capAgent, capDetail}}
	for _, f := range fs {
		t.Rows = append(t.Rows, []string{string(f.Kind), f.AgentID, f.Route, f.Owner, f.Detail})
	}
	return t
}

// Access is the access answer's table: one row per agent.
func Access(a visibility.AccessAnswer) Table {
	title := fmt.Sprintf("access %s to %s", ms(a.Request.Span.From.UnixMilli()), ms(a.Request.Span.To.UnixMilli()))
	if a.Request.Tag != "" {
		title += ", tag " + a.Request.Tag
	}
	if a.Request.Template != "" {
		title += ", template " + a.Request.Template
	}
	if a.Request.AgentID != "" {
		title += ", agent " + a.Request.AgentID
	}
	switch {
	case a.Request.Tag == "" && a.Request.Template == "":
		title += ": every route"
	default:
		title += fmt.Sprintf(": %d routes", len(a.Routes))
	}
	t := Table{
		Title: title,
		Header: []string{"AGENT", "CALLS", "BYTES_IN", "BYTES_OUT", "2XX", "3XX", "4XX", "401", "403", "5XX", "FIRST_CALL", "LAST_CALL",
			"ROUTES", "SAMPLE_REQUEST_IDS"},
		Caps: []int{capAgent, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, capList, capList},
	}
	for _, r := range a.Rows {
		t.Rows = append(t.Rows, []string{r.AgentID, u64(r.Calls), u64(r.RequestBytes), u64(r.ResponseBytes),
			u64(r.Status.S2xx), u64(r.Status.S3xx), u64(r.Status.S4xx), u64(r.Status.S401), u64(r.Status.S403), u64(r.Status.S5xx),
			ms(r.FirstMs), ms(r.LastMs), strings.Join(r.Routes, " "), strings.Join(r.SampleRequestIDs, " ")})
	}
	return t
}

// Events is the drill-down's table, newest first.
func Events(evs []event.Event) Table {
	t := Table{
		Header: []string{"TIME", "AGENT", "METHOD", "ROUTE", "PATH", "STATUS", "BYTES_IN", "BYTES_OUT", "SOURCE_IP", "CREDENTIAL", "GATEWAY", "REQUEST_ID", "EVENT_ID"},
		Caps:   []int{0, capAgent, 16, capRoute, capRoute, 0, 0, 0, 0, capAgent, capAgent, capAgent, capAgent},
	}
	for _, e := range evs {
		t.Rows = append(t.Rows, []string{msFine(e.EventTimeMs), e.AgentID, e.Method, e.Route, e.Path, strconv.Itoa(int(e.Status)),
			u64(e.RequestBytes), u64(e.ResponseBytes), e.SourceIP, e.CredentialID, e.Gateway, e.RequestID, e.EventID})
	}
	return t
}

// AgentProfile is an agent's profile: its summary, its routes used
// versus approved, its findings, and last its timeline.
func AgentProfile(p visibility.AgentProfile) []Table {
	a := p.Agent
	sum := Table{Title: "agent " + a.AgentID, Header: []string{"FIELD", "VALUE"}, Caps: []int{0, capDetail}}
	add := func(k, v string) { sum.Rows = append(sum.Rows, []string{k, v}) }
	add("lifecycle", string(a.Lifecycle))
	add("registered", yesNo(a.Registered))
	add("owner", a.Owner)
	add("role", a.Role)
	add("first seen", ms(a.FirstSeenMs))
	add("last seen", ms(a.LastSeenMs))
	add("calls in span", u64(a.Calls))
	add("routes in span", num(a.Routes))
	add("unapproved routes", num(a.UnapprovedRoutes))
	add("credentials", strings.Join(a.Credentials, " "))
	add("source addresses", strings.Join(a.SourceIPs, " "))
	add("gateways", strings.Join(a.Gateways, " "))
	if r := p.Registry; r != nil {
		add("credential id", r.CredentialID)
		if !r.ReviewBy.IsZero() {
			add("review by", r.ReviewBy.Format(time.DateOnly))
		}
		if d, ok := r.CredentialDeadline(); ok {
			add("credential renew by", d.Format(time.DateOnly))
		}
	}
	routes := AgentRoutes(p.Routes)
	routes.Title = "routes used versus approved"
	findings := Findings(p.Findings)
	findings.Title = "findings"
	tl := Table{Title: "timeline", Header: []string{"AT", "KIND", "SUMMARY"}, Caps: []int{0, 0, capDetail}}
	for _, e := range p.Timeline {
		at := ms(e.AtMs)
		if e.Kind == visibility.TimelineCalls {
			at = time.UnixMilli(e.AtMs).UTC().Format(time.DateOnly)
		}
		tl.Rows = append(tl.Rows, []string{at, e.Kind, e.Summary})
	}
	return []Table{sum, routes, findings, tl}
}

// RouteProfile is a route's profile: its summary, its callers, and last
// its callers per day.
func RouteProfile(p visibility.RouteProfile) []Table {
	sum := Routes([]visibility.RouteRow{p.Route})
	sum.Title = "route " + p.Route.Route
	callers := AgentRoutes(p.Callers)
	callers.Title = "callers"
	daily := Table{Title: "callers per day", Header: []string{"DAY", "AGENT", "CALLS", "4XX", "BYTES_OUT", "FIRST_CALL", "LAST_CALL"}, Caps: []int{0, capAgent}}
	for _, d := range p.Daily {
		daily.Rows = append(daily.Rows, []string{d.Day.UTC().Format(time.DateOnly), d.Key, u64(d.Calls), u64(d.Status.S4xx), u64(d.ResponseBytes), ms(d.FirstMs), ms(d.LastMs)})
	}
	return []Table{sum, callers, daily}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func num(n int) string    { return strconv.Itoa(n) }
func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// ms renders Unix milliseconds as RFC 3339 UTC to the second; "" for 0.
func ms(v int64) string {
	if v == 0 {
		return ""
	}
	return time.UnixMilli(v).UTC().Format(time.RFC3339)
}

// msFine renders Unix milliseconds to the millisecond.
func msFine(v int64) string {
	return time.UnixMilli(v).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
