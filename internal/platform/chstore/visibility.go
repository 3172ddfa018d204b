package chstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Visibility is the visibility.Source of the distributed mode. Agents,
// AgentRoutes and Daily read the inventory's daily summaries (migration
// 0005) for the whole UTC days of the span, and the events themselves for
// the partial days at its ends, so any span is answered to the
// millisecond. Access and Events read the events, each event_id once, so
// they stay exact when a retried insert was counted twice by the views
// (docs/schema.md). Anomalies, Actions and Verdicts read the detector's
// and the responder's tables. Safe for concurrent use; it does not own the
// Store, which must be migrated.
type Visibility struct {
	st    *Store
	audit *Audit
}

var _ visibility.Source = (*Visibility)(nil)

// NewVisibility returns the visibility source of st's database.
func NewVisibility(st *Store) *Visibility { return &Visibility{st: st, audit: NewAudit(st)} }

const dayMs = 24 * 60 * 60 * 1000

// spanParts splits a span into the whole UTC days the summaries answer
// for, [fullFrom, fullTo) in Unix milliseconds (empty when fullFrom ==
// fullTo), and the ranges at its ends that the events answer for.
type spanParts struct {
	fullFrom, fullTo int64
	edges            [][2]int64
}

func splitSpan(sp visibility.Span) spanParts {
	from, to := sp.From.UnixMilli(), sp.To.UnixMilli()
	if from >= to {
		return spanParts{}
	}
	ff := floorDiv(from+dayMs-1, dayMs) * dayMs
	ft := floorDiv(to, dayMs) * dayMs
	if ff >= ft {
		return spanParts{edges: [][2]int64{{from, to}}}
	}
	p := spanParts{fullFrom: ff, fullTo: ft}
	if from < ff {
		p.edges = append(p.edges, [2]int64{from, ff})
	}
	if ft < to {
		p.edges = append(p.edges, [2]int64{ft, to})
	}
	return p
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (p spanParts) empty() bool { return p.fullFrom == p.fullTo && len(p.edges) == 0 }

// eventRanges is a condition selecting events with event_time_ms in any of
// ranges, with the implied event_time bounds that let the server skip day
// partitions. The upper bound is that of the range's last millisecond, so
// a range ending at midnight does not open the next day's partition.
func eventRanges(ranges [][2]int64) string {
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = "(event_time_ms >= " + strconv.FormatInt(r[0], 10) + " AND event_time_ms < " + strconv.FormatInt(r[1], 10) +
			" AND event_time >= toDateTime(" + strconv.FormatUint(uint64(partitionSec(r[0])), 10) + ")" +
			" AND event_time <= toDateTime(" + strconv.FormatUint(uint64(partitionSec(r[1]-1)), 10) + "))"
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// dayLiteral is the Date literal of the UTC day starting at ms.
func dayLiteral(ms int64) string {
	return "toDate('" + time.UnixMilli(ms).UTC().Format(time.DateOnly) + "')"
}

// filter is an equality condition on a column, skipped when value is "".
type filter struct{ col, value string }

func filterSQL(fs []filter, args *[]any) string {
	var b strings.Builder
	for _, f := range fs {
		if f.value == "" {
			continue
		}
		b.WriteString(" AND " + quoteIdent(f.col) + " = ?")
		*args = append(*args, f.value)
	}
	return b.String()
}

// summaryRows is a subquery of the rows of table for span, the summary's
// rows for the whole days and the view's aggregation of the events for
// the partial ones, with its columns; cols lists the summary's columns in
// the view's order. It returns "" when the span is empty.
func summaryRows(table string, cols []string, p spanParts, fs []filter) (string, []any, error) {
	if p.empty() {
		return "", nil, nil
	}
	var (
		args []any
		subs []string
	)
	if p.fullFrom < p.fullTo {
		subs = append(subs, "SELECT "+identList(cols)+" FROM "+quoteIdent(table)+
			" WHERE day >= "+dayLiteral(p.fullFrom)+" AND day < "+dayLiteral(p.fullTo)+filterSQL(fs, &args))
	}
	if len(p.edges) > 0 {
		v, err := inventoryViewOf(table)
		if err != nil {
			return "", nil, err
		}
		subs = append(subs, v.fromEvents(eventRanges(p.edges)+filterSQL(fs, &args)))
	}
	return "(" + strings.Join(subs, " UNION ALL ") + ")", args, nil
}

var (
	routeColumns = []string{"day", "agent_id", "route", "calls", "request_bytes", "response_bytes",
		"s2xx", "s3xx", "s4xx", "s5xx", "s401", "s403", "first_ms", "last_ms"}
	attrColumns = []string{"day", "agent_id", "kind", "value", "calls"}
)

// usageMerge reads the Usage of a group of inventory_agent_route_daily
// rows, in the order scanUsage scans it.
const usageMerge = "countMerge(calls), sumMerge(request_bytes), sumMerge(response_bytes), " +
	"sumMerge(s2xx), sumMerge(s3xx), sumMerge(s4xx), sumMerge(s5xx), sumMerge(s401), sumMerge(s403), " +
	"minMerge(first_ms), maxMerge(last_ms)"

// usageEvents is usageMerge over events.
const usageEvents = "count(), sum(request_bytes), sum(response_bytes), " +
	"countIf(status >= 200 AND status < 300), countIf(status >= 300 AND status < 400), " +
	"countIf(status >= 400 AND status < 500), countIf(status >= 500 AND status < 600), " +
	"countIf(status = 401), countIf(status = 403), min(event_time_ms), max(event_time_ms)"

func usageDest(u *visibility.Usage) []any {
	return []any{&u.Calls, &u.RequestBytes, &u.ResponseBytes,
		&u.Status.S2xx, &u.Status.S3xx, &u.Status.S4xx, &u.Status.S5xx, &u.Status.S401, &u.Status.S403,
		&u.FirstMs, &u.LastMs}
}

// query runs q and calls scan for each row.
func (v *Visibility) query(ctx context.Context, what, q string, args []any, scan func(rows interface{ Scan(...any) error }) error) error {
	rows, err := v.st.conn.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s from %s: %w", what, v.st.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s from %s: %w", what, v.st.db, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s from %s: %w", what, v.st.db, err)
	}
	return nil
}

// Agents implements visibility.Source.
func (v *Visibility) Agents(ctx context.Context, span visibility.Span, agentID string) ([]visibility.AgentUsage, error) {
	p := splitSpan(span)
	out := []visibility.AgentUsage{}
	fs := []filter{{"agent_id", agentID}}
	src, args, err := summaryRows(inventoryRouteTable, routeColumns, p, fs)
	if err != nil || src == "" {
		return out, err
	}
	idx := map[string]int{}
	// uniqExact of the routes' 64-bit hashes rather than of the routes:
	// three times faster on a month of a large fleet, and two of an
	// agent's routes colliding is as likely as not at all.
	err = v.query(ctx, "read agents", "SELECT agent_id, "+usageMerge+", uniqExact(day), uniqExact(cityHash64(route)) FROM "+src+" GROUP BY agent_id", args,
		func(rows interface{ Scan(...any) error }) error {
			var (
				a            visibility.AgentUsage
				days, routes uint64
			)
			if err := rows.Scan(append(append([]any{&a.AgentID}, usageDest(&a.Usage)...), &days, &routes)...); err != nil {
				return err
			}
			a.ActiveDays, a.Routes = int(days), int(routes)
			a.SourceIPs, a.Credentials, a.Gateways = []string{}, []string{}, []string{}
			idx[a.AgentID] = len(out)
			out = append(out, a)
			return nil
		})
	if err != nil {
		return nil, err
	}
	src, args, err = summaryRows(inventoryAttrTable, attrColumns, p, fs)
	if err != nil {
		return nil, err
	}
	err = v.query(ctx, "read agents' addresses, credentials and gateways",
		// The two groupUniqArray(value) are one aggregate: the server
		// computes an expression once however often it is named.
		"SELECT agent_id, kind, length(groupUniqArray(value)), arraySlice(arraySort(groupUniqArray(value)), 1, "+strconv.Itoa(visibility.MaxValues)+")"+
			" FROM "+src+" GROUP BY agent_id, kind", args,
		func(rows interface{ Scan(...any) error }) error {
			var (
				agent  string
				kind   uint8
				n      uint64
				values []string
			)
			if err := rows.Scan(&agent, &kind, &n, &values); err != nil {
				return err
			}
			i, ok := idx[agent]
			if !ok {
				return nil // the two reads raced an insert
			}
			a := &out[i]
			slices.Sort(values)
			switch kind {
			case attrSourceIP:
				a.SourceIPs, a.SourceIPCount = values, int(n)
			case attrCredential:
				a.Credentials, a.CredentialCount = values, int(n)
			case attrGateway:
				a.Gateways, a.GatewayCount = values, int(n)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b visibility.AgentUsage) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out, nil
}

// AgentRoutes implements visibility.Source.
func (v *Visibility) AgentRoutes(ctx context.Context, span visibility.Span, agentID, route string) ([]visibility.AgentRouteUsage, error) {
	out := []visibility.AgentRouteUsage{}
	src, args, err := summaryRows(inventoryRouteTable, routeColumns, splitSpan(span),
		[]filter{{"agent_id", agentID}, {"route", route}})
	if err != nil || src == "" {
		return out, err
	}
	err = v.query(ctx, "read agents' routes", "SELECT agent_id, route, "+usageMerge+" FROM "+src+" GROUP BY agent_id, route", args,
		func(rows interface{ Scan(...any) error }) error {
			var r visibility.AgentRouteUsage
			if err := rows.Scan(append([]any{&r.AgentID, &r.Route}, usageDest(&r.Usage)...)...); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b visibility.AgentRouteUsage) int {
		return cmp.Or(cmp.Compare(a.AgentID, b.AgentID), cmp.Compare(a.Route, b.Route))
	})
	return out, nil
}

// Daily implements visibility.Source.
func (v *Visibility) Daily(ctx context.Context, span visibility.Span, by visibility.DailyBy, agentID, route string) ([]visibility.DailyCount, error) {
	out := []visibility.DailyCount{}
	src, args, err := summaryRows(inventoryRouteTable, routeColumns, splitSpan(span),
		[]filter{{"agent_id", agentID}, {"route", route}})
	if err != nil || src == "" {
		return out, err
	}
	key := "agent_id"
	if by == visibility.ByRoute {
		key = "route"
	}
	// toUInt32 of a Date is its day number: no time zone comes into it.
	err = v.query(ctx, "read daily traffic", "SELECT toUInt32(day) AS d, "+key+", "+usageMerge+" FROM "+src+" GROUP BY d, "+key, args,
		func(rows interface{ Scan(...any) error }) error {
			var (
				d  visibility.DailyCount
				dn uint32
			)
			if err := rows.Scan(append([]any{&dn, &d.Key}, usageDest(&d.Usage)...)...); err != nil {
				return err
			}
			d.Day = time.Unix(int64(dn)*dayMs/1000, 0).UTC()
			out = append(out, d)
			return nil
		})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b visibility.DailyCount) int {
		return cmp.Or(a.Day.Compare(b.Day), cmp.Compare(a.Key, b.Key))
	})
	return out, nil
}

// eventWhere selects the events of span, of agentID when not "", on one of
// routes when not empty.
func eventWhere(span visibility.Span, agentID string, routes []string) (string, []any) {
	where := eventRanges([][2]int64{{span.From.UnixMilli(), span.To.UnixMilli()}})
	var args []any
	where += filterSQL([]filter{{"agent_id", agentID}}, &args)
	if len(routes) > 0 {
		where += " AND route IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(routes)), ", ") + ")"
		for _, r := range routes {
			args = append(args, r)
		}
	}
	return where, args
}

// Access implements visibility.Source.
func (v *Visibility) Access(ctx context.Context, q visibility.AccessQuery) ([]visibility.AccessRow, error) {
	out := []visibility.AccessRow{}
	if !q.Span.From.Before(q.Span.To) {
		return out, nil
	}
	if q.Samples <= 0 {
		q.Samples = visibility.DefaultSamples
	}
	where, args := eventWhere(q.Span, q.AgentID, q.Routes)
	idx := map[string]int{}
	err := v.query(ctx, "read access", "SELECT agent_id, "+usageEvents+", arraySort(groupUniqArray(route))"+
		" FROM (SELECT event_id, agent_id, route, status, request_bytes, response_bytes, event_time_ms FROM events"+
		" WHERE "+where+" LIMIT 1 BY event_id) GROUP BY agent_id", args,
		func(rows interface{ Scan(...any) error }) error {
			var r visibility.AccessRow
			if err := rows.Scan(append(append([]any{&r.AgentID}, usageDest(&r.Usage)...), &r.Routes)...); err != nil {
				return err
			}
			slices.Sort(r.Routes)
			idx[r.AgentID] = len(out)
			out = append(out, r)
			return nil
		})
	if err != nil || len(out) == 0 {
		return out, err
	}
	// The earliest request ids of each agent, ties by event_id as the
	// events are ordered everywhere.
	err = v.query(ctx, "read access samples", "SELECT agent_id, request_id"+
		" FROM (SELECT event_id, agent_id, request_id, event_time_ms FROM events WHERE "+where+" AND request_id != '' LIMIT 1 BY event_id)"+
		" ORDER BY agent_id, event_time_ms, event_id LIMIT "+strconv.Itoa(q.Samples)+" BY agent_id", args,
		func(rows interface{ Scan(...any) error }) error {
			var agent, id string
			if err := rows.Scan(&agent, &id); err != nil {
				return err
			}
			if i, ok := idx[agent]; ok {
				out[i].SampleRequestIDs = append(out[i].SampleRequestIDs, id)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b visibility.AccessRow) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out, nil
}

// Events implements visibility.Source: newest first, ties by event_id
// descending, each event_id once. The server keeps only the newest rows
// (a top-n sort, not a sort of the whole span); the copies of a retried
// insert are equal rows, so they come out next to each other and are
// dropped here, and in the rare case that they leave fewer than asked, the
// query is repeated for more rows.
func (v *Visibility) Events(ctx context.Context, q visibility.EventQuery) ([]event.Event, error) {
	if !q.Span.From.Before(q.Span.To) {
		return nil, nil
	}
	where, args := eventWhere(q.Span, q.AgentID, q.Routes)
	n := q.EventLimit()
	for rows := n; ; rows *= 2 {
		var (
			out  []event.Event
			read int
		)
		err := v.query(ctx, "read events", "SELECT "+eventSelectList+" FROM events WHERE "+where+
			" ORDER BY event_time_ms DESC, event_id DESC LIMIT "+strconv.Itoa(rows), args,
			func(r interface{ Scan(...any) error }) error {
				read++
				var e event.Event
				if err := scanEvent(r, &e); err != nil {
					return err
				}
				if len(out) > 0 && out[len(out)-1].EventID == e.EventID {
					return nil
				}
				if len(e.QueryParams) == 0 {
					e.QueryParams = nil
				}
				out = append(out, e)
				return nil
			})
		if err != nil {
			return nil, err
		}
		if len(out) >= n || read < rows {
			if len(out) > n {
				out = out[:n]
			}
			return out, nil
		}
	}
}

// Anomalies implements visibility.Source, ordered by window start, agent,
// kind and id.
func (v *Visibility) Anomalies(ctx context.Context, span visibility.Span, agentID string) ([]anomaly.Anomaly, error) {
	return v.st.Anomalies(ctx, agentID, span.From.UnixMilli(), span.To.UnixMilli())
}

// maxActions bounds Actions: a span's audit records are a person's reading,
// and beyond this the span is too wide.
const maxActions = 1 << 20

// Actions implements visibility.Source, ordered by time then id.
func (v *Visibility) Actions(ctx context.Context, span visibility.Span, agentID string) ([]audit.Record, error) {
	from, to := span.From.UnixMilli(), span.To.UnixMilli()
	if from >= to {
		return nil, nil
	}
	return v.audit.Query(ctx, audit.Filter{AgentID: agentID, FromMs: from, ToMs: to, NotAction: audit.ActionAsk, Limit: maxActions})
}

// Verdicts implements visibility.Source, ordered by time then id; a
// verdict stored more than once is returned once, at its earliest time in
// the span.
func (v *Visibility) Verdicts(ctx context.Context, span visibility.Span) ([]anomaly.Verdict, error) {
	from, to := span.From.UnixMilli(), span.To.UnixMilli()
	if from >= to {
		return nil, nil
	}
	var out []anomaly.Verdict
	err := v.query(ctx, "read verdicts", "SELECT "+feedbackSelectList+" FROM feedback_verdicts"+
		" WHERE at_ms >= ? AND at_ms < ? ORDER BY at_ms, verdict_id LIMIT 1 BY verdict_id", []any{from, to},
		func(rows interface{ Scan(...any) error }) error {
			var a anomaly.Verdict
			if err := rows.Scan(&a.ID, &a.AnomalyID, &a.AgentID, &a.Kind, &a.WindowStartMs, &a.WindowEndMs,
				&a.Values, &a.Verdict, &a.Author, &a.AtMs); err != nil {
				return err
			}
			if len(a.Values) == 0 {
				a.Values = nil
			}
			out = append(out, a)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}
