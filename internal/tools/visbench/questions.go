package visbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

// loadAvg is /proc/loadavg's first three fields, "" where it is missing.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// tagged returns the inventory's templates carrying tag.
func tagged(tag string) []string {
	var out []string
	for _, r := range sim.Inventory() {
		for _, t := range r.Tags() {
			if t == tag {
				out = append(out, r.Template)
			}
		}
	}
	return out
}

// Questions builds the questions to time against o.Database, the split
// of their time by Source method (for Measure), and a func that releases
// what they hold.
func Questions(ctx context.Context, o Options, log *slog.Logger) (_ []Question, split func() map[string]time.Duration, release func(), _ error) {
	if err := o.setDefaults(); err != nil {
		return nil, nil, nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Protocol: clickhouse.Native, Addr: o.ClickHouse, Auth: clickhouse.Auth{Database: o.Database}, ReadTimeout: 5 * time.Minute})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("visbench: %w", err)
	}
	st, err := chstore.Open(ctx, chstore.Options{Addr: o.ClickHouse, Database: o.Database, ReadTimeout: 5 * time.Minute}, log)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("visbench: %w", err)
	}
	release = func() { st.Close(); conn.Close() }
	src := newTimedSource(chstore.NewVisibility(st))
	svc, reg, err := service(st, src, o, o.now(), log)
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	_, to := o.Span()
	monthly, _, err := service(st, src, o, to.Add(6*time.Hour), log)
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	qs := append(serviceQuestions(svc, monthly, src, reg, o), sqlQuestions(conn, o)...)
	cq, stopConsole, err := consoleQuestions(ctx, st, svc, src, reg, o)
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	closeStore := release
	release = func() { stopConsole(); closeStore() }
	qs = append(qs, cq...)
	return qs, src.take, release, nil
}

// count runs q and counts its rows.
func count(ctx context.Context, conn driver.Conn, q string, args ...any) (int, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// sqlQuestions are the questions as raw SQL on the events table: what
// the access question reads whatever the summaries, and the baseline the
// summaries are meant to beat.
func sqlQuestions(conn driver.Conn, o Options) []Question {
	from, _ := o.Span()
	day := func(run int) (time.Time, time.Time) {
		d := from.AddDate(0, 0, run%o.Days)
		return d, d.AddDate(0, 0, 1)
	}
	tags := [][]string{tagged("sensitive"), tagged("deprecated")}
	return []Question{{
		Name:   "raw SQL on events: access, one day, one tag (sensitive / deprecated)",
		Target: time.Second,
		Ask: func(ctx context.Context, run int) (int, error) {
			f, t := day(run)
			return count(ctx, conn, `SELECT agent_id, count(), sum(request_bytes), sum(response_bytes),
				countIf(status >= 200 AND status < 300), countIf(status >= 400 AND status < 500), countIf(status = 401), countIf(status = 403),
				min(event_time_ms), max(event_time_ms), groupUniqArray(route), groupArray(5)(request_id)
				FROM events PREWHERE route IN (`+inList(tags[run%2])+`) WHERE event_time >= ? AND event_time < ? GROUP BY agent_id`, f, t)
		},
	}}
}

// inList renders vals as a list of SQL string literals.
func inList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return strings.Join(q, ", ")
}
