// Package visibility's benchmark: visbench loads a month of a simulated
// fleet (2,000 agents over 30 days, at least 50 million events by default)
// into a ClickHouse database of its own through the product's insert path
// (chstore's events insert, so the summary tables' materialized views fire
// as they do under ingest), then times the visibility questions next to
// each other on it. `agentwatch bench visibility` runs it.
//
// Loading takes minutes, so it is resumable and reusable: each simulated
// UTC day is loaded whole and then recorded in the database's bench_loaded
// table; a later run skips the recorded days, and when every day is
// recorded it only measures. A day cut short (the process killed in the
// middle of it) cannot be told apart from a complete one by its rows, and
// the summaries it fed cannot be taken back, so a later run refuses such a
// database and asks for --fresh.
package visbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Options say what to load and measure. The zero value of each field is
// its default.
type Options struct {
	// ClickHouse are native-protocol addresses; default 127.0.0.1:9000.
	ClickHouse []string
	// Database is the benchmark's own database; default bench_visibility.
	// It is kept between runs: that is what makes them resumable.
	Database string
	// Agents is the simulated fleet's size; default 2,000.
	Agents int
	// Days is how many UTC days to simulate from Start; default 30.
	Days int
	// Start is the first simulated day (its date is used, in UTC);
	// default 2026-11-01, so that 30 days are the month 2026-11.
	Start time.Time
	// RateScale multiplies the simulator's traffic; default 0.8, which
	// gives about 52 million events for 2,000 agents over 30 days.
	RateScale float64
	// Seed selects the simulated fleet and traffic; default 1.
	Seed uint64
	// BatchSize is the rows per insert; default 20,000, ingest's own
	// batch size, so that the views see blocks of the size they see in
	// production.
	BatchSize int
	// Inserters is how many inserts run at once; default 2.
	Inserters int
	// MaxDays, when positive, loads at most this many days in this run
	// and stops: a long load split into parts.
	MaxDays int
	// MinEvents is the least a complete load must hold (0: any). Fewer
	// is an error that says to raise RateScale.
	MinEvents uint64
	// Fresh drops the database first.
	Fresh bool
	// Now is the questions' clock; default 18:00 on the last simulated
	// day (see Options.now).
	Now time.Time
}

const topic = "gateway.access.v1"

func (o *Options) setDefaults() error {
	var none []string
	p := 0
	benchkit.Defaults(&none, &o.ClickHouse, &p)
	benchkit.Default(&o.Database, "bench_visibility")
	benchkit.Default(&o.Agents, 2000)
	benchkit.Default(&o.Days, 30)
	benchkit.Default(&o.Start, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	benchkit.Default(&o.RateScale, 0.8)
	benchkit.Default(&o.Seed, 1)
	benchkit.Default(&o.BatchSize, 20_000)
	benchkit.Default(&o.Inserters, 2)
	o.Start = time.Date(o.Start.Year(), o.Start.Month(), o.Start.Day(), 0, 0, 0, 0, time.UTC)
	if !strings.HasPrefix(o.Database, "bench_") || !identOK(o.Database) {
		// It is dropped with --fresh: only a benchmark's own name will do.
		return fmt.Errorf("visbench: database %q: must be a plain identifier starting with bench_", o.Database)
	}
	if o.Agents < 0 || o.Days < 0 || o.RateScale < 0 || o.BatchSize < 0 || o.Inserters < 0 || o.MaxDays < 0 {
		return errors.New("visbench: agents, days, rate scale, batch size, inserters and max days must be positive")
	}
	return nil
}

func identOK(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// Span is the simulated time range [From, To).
func (o Options) Span() (from, to time.Time) {
	return o.Start, o.Start.AddDate(0, 0, o.Days)
}

// Simulation is the simulator configuration of the load. Its incidents
// put one misbehaviour a day, of every kind in turn, into each day after
// the first three, so that the zombie, sensitive, shadow-agent and denial
// questions have answers on most days.
func (o Options) Simulation() sim.Config {
	var incs []sim.IncidentSpec
	for d := 3; d < o.Days; d++ {
		k := sim.AllIncidentKinds[d%len(sim.AllIncidentKinds)]
		length := 40 * time.Minute
		if k == sim.SlowExfiltration {
			length = 3 * time.Hour
		}
		// Business hours, a different hour each day; OffHours at 03:00.
		at := time.Duration(24*d+9+d%7) * time.Hour
		if k == sim.OffHours {
			at = time.Duration(24*d+3) * time.Hour
		}
		incs = append(incs, sim.IncidentSpec{Kind: k, Offset: at, Duration: length})
	}
	return sim.Config{
		Seed: o.Seed, Agents: o.Agents, Start: o.Start, Duration: time.Duration(o.Days) * 24 * time.Hour,
		RateScale: o.RateScale, Incidents: incs,
	}
}

// LoadReport says what a Load did and what the database holds.
type LoadReport struct {
	Database string
	// Events is the rows of the events table after the load; Days the
	// days recorded as loaded, of Options.Days.
	Events     uint64
	Days, Want int
	// Loaded and Skipped are the days this run loaded and found loaded.
	Loaded, Skipped int
	// LoadedEvents is the events this run inserted, in LoadTime (the
	// whole run: simulation, inserts, the views' work), of which Generate
	// is the time the simulator took (on its own goroutine, overlapped
	// with the inserts).
	LoadedEvents       uint64
	LoadTime, Generate time.Duration
	// Seeded is the responder records this run wrote once the events
	// were complete (zero when they were there already).
	Seeded Seeded
	// Bytes and Rows are on disk per table (active parts), largest first.
	Tables []TableSize
}

// TableSize is one table's size on disk.
type TableSize struct {
	Table             string
	Rows              uint64
	Bytes, RawBytes   uint64
	Parts, Partitions uint64
}

// Complete says every day is loaded.
func (r LoadReport) Complete() bool { return r.Days == r.Want }

// Rate is the events this run inserted per second of its load time.
func (r LoadReport) Rate() float64 { return benchkit.Rate(int(r.LoadedEvents), r.LoadTime) }

// DiskBytes is the database's compressed size.
func (r LoadReport) DiskBytes() uint64 {
	var n uint64
	for _, t := range r.Tables {
		n += t.Bytes
	}
	return n
}

// String renders the report as text and a Markdown table of the sizes.
func (r LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "visibility benchmark database %s: %d events, %d of %d days loaded", r.Database, r.Events, r.Days, r.Want)
	if r.Loaded > 0 {
		fmt.Fprintf(&b, "; this run loaded %d day(s), %d events in %s (%.0f events/s; the simulator, on its own goroutine alongside the inserts, was busy for %s of it)",
			r.Loaded, r.LoadedEvents, r.LoadTime.Round(time.Second), r.Rate(), r.Generate.Round(time.Second))
	}
	if r.Skipped > 0 {
		fmt.Fprintf(&b, "; %d day(s) were already loaded", r.Skipped)
	}
	if r.Seeded.Anomalies > 0 {
		fmt.Fprintf(&b, "; wrote %d anomalies, %d responder actions and %d verdicts", r.Seeded.Anomalies, r.Seeded.Actions, r.Seeded.Verdicts)
	}
	fmt.Fprintf(&b, "\n\n| table | rows | on disk | uncompressed | parts | partitions |\n|---|---:|---:|---:|---:|---:|\n")
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %d |\n", t.Table, t.Rows, gib(t.Bytes), gib(t.RawBytes), t.Parts, t.Partitions)
	}
	fmt.Fprintf(&b, "| **total** | | %s | | | |\n", gib(r.DiskBytes()))
	return b.String()
}

func gib(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// progressDDL records each loaded day, with the schema it was loaded
// under: days loaded before a migration added a view did not feed it.
const progressDDL = `CREATE TABLE IF NOT EXISTS bench_loaded
(day Date, events UInt64, migrations UInt32, seconds Float64, loaded_at DateTime)
ENGINE = MergeTree() ORDER BY day`

// Load fills o.Database with the simulated month, skipping the days it
// already holds; see the package comment. progress gets a line every few
// seconds.
func Load(ctx context.Context, o Options, log *slog.Logger, progress io.Writer) (LoadReport, error) {
	if err := o.setDefaults(); err != nil {
		return LoadReport{}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := LoadReport{Database: o.Database, Want: o.Days}
	admin, err := clickhouse.Open(&clickhouse.Options{Protocol: clickhouse.Native, Addr: o.ClickHouse, ReadTimeout: 10 * time.Minute})
	if err != nil {
		return rep, fmt.Errorf("visbench: %w", err)
	}
	defer admin.Close()
	if o.Fresh {
		fmt.Fprintf(progress, "dropping database %s...\n", o.Database)
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS `"+o.Database+"`"); err != nil {
			return rep, fmt.Errorf("visbench: drop %s: %w", o.Database, err)
		}
	}
	st, err := chstore.Open(ctx, chstore.Options{Addr: o.ClickHouse, Database: o.Database, ReadTimeout: 10 * time.Minute}, log)
	if err != nil {
		return rep, fmt.Errorf("visbench: %w", err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return rep, fmt.Errorf("visbench: %w", err)
	}
	applied, err := st.AppliedMigrations(ctx)
	if err != nil {
		return rep, fmt.Errorf("visbench: %w", err)
	}
	migrations := uint32(len(applied))
	if err := admin.Exec(ctx, strings.Replace(progressDDL, "bench_loaded", "`"+o.Database+"`.bench_loaded", 1)); err != nil {
		return rep, fmt.Errorf("visbench: create bench_loaded: %w", err)
	}
	done, err := loadedDays(ctx, admin, o.Database, migrations)
	if err != nil {
		return rep, err
	}
	if err := checkNoPartialDay(ctx, admin, o.Database, done); err != nil {
		return rep, err
	}
	rep.Skipped = len(done)

	from, _ := o.Span()
	var todo []time.Time
	for d := range o.Days {
		day := from.AddDate(0, 0, d)
		if !done[day] && (o.MaxDays == 0 || len(todo) < o.MaxDays) {
			todo = append(todo, day)
		}
	}
	if len(todo) > 0 {
		start := time.Now()
		n, gen, err := loadDays(ctx, st, admin, o, todo, migrations, progress)
		rep.LoadTime, rep.Generate, rep.LoadedEvents = time.Since(start), gen, n
		if err != nil {
			return rep, err
		}
		rep.Loaded = len(todo)
	}
	if done, err = loadedDays(ctx, admin, o.Database, migrations); err != nil {
		return rep, err
	}
	rep.Days = len(done)
	if rep.Events, err = st.CountEvents(ctx, false); err != nil {
		return rep, fmt.Errorf("visbench: %w", err)
	}
	var recorded uint64
	if err := admin.QueryRow(ctx, "SELECT sum(events) FROM `"+o.Database+"`.bench_loaded").Scan(&recorded); err != nil {
		return rep, fmt.Errorf("visbench: read bench_loaded: %w", err)
	}
	if recorded != rep.Events {
		return rep, fmt.Errorf("visbench: database %s holds %d events but its loads recorded %d: it was changed behind the benchmark's back; load again with --fresh", o.Database, rep.Events, recorded)
	}
	if rep.Complete() {
		if rep.Seeded, err = seed(ctx, st, o); err != nil {
			return rep, err
		}
	}
	if rep.Tables, err = tableSizes(ctx, admin, o.Database); err != nil {
		return rep, err
	}
	if rep.Complete() && rep.Events < o.MinEvents {
		return rep, fmt.Errorf("visbench: the complete load holds %d events, fewer than %d: raise --rate-scale (now %g) and load again with --fresh", rep.Events, o.MinEvents, o.RateScale)
	}
	return rep, nil
}

// loadedDays reads bench_loaded. A day loaded under fewer migrations than
// the database has now missed a view's inserts: that is an error.
func loadedDays(ctx context.Context, conn driver.Conn, db string, migrations uint32) (map[time.Time]bool, error) {
	rows, err := conn.Query(ctx, "SELECT day, min(migrations) FROM `"+db+"`.bench_loaded GROUP BY day")
	if err != nil {
		return nil, fmt.Errorf("visbench: read bench_loaded: %w", err)
	}
	defer rows.Close()
	done := map[time.Time]bool{}
	for rows.Next() {
		var (
			day time.Time
			m   uint32
		)
		if err := rows.Scan(&day, &m); err != nil {
			return nil, fmt.Errorf("visbench: read bench_loaded: %w", err)
		}
		if m < migrations {
			return nil, fmt.Errorf("visbench: day %s was loaded under %d schema migrations, the database has %d now: the tables and views added since missed its events; load again with --fresh", day.Format(time.DateOnly), m, migrations)
		}
		done[time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)] = true
	}
	return done, rows.Err()
}

// checkNoPartialDay refuses events on a day bench_loaded does not record:
// a load cut short, whose rows (and the summaries they fed) a new load of
// that day would double.
func checkNoPartialDay(ctx context.Context, conn driver.Conn, db string, done map[time.Time]bool) error {
	rows, err := conn.Query(ctx, "SELECT toDate(event_time) AS day, count() FROM `"+db+"`.events GROUP BY day ORDER BY day")
	if err != nil {
		return fmt.Errorf("visbench: count events per day: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			day time.Time
			n   uint64
		)
		if err := rows.Scan(&day, &n); err != nil {
			return fmt.Errorf("visbench: count events per day: %w", err)
		}
		if !done[time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)] {
			return fmt.Errorf("visbench: database %s holds %d events of %s, a day whose load did not finish; load again with --fresh", db, n, day.Format(time.DateOnly))
		}
	}
	return rows.Err()
}

// batch is one insert's events, and the day they belong to.
type batch struct {
	day int // index into todo
	evs []event.Event
}

// loadDays runs the simulator over the whole span (its incidents and
// random draws depend on the span, so a day is only the same day when
// the whole run is generated) and inserts the events of the days in todo,
// recording each day once its inserts are done.
func loadDays(ctx context.Context, st *chstore.Store, admin driver.Conn, o Options, todo []time.Time, migrations uint32, progress io.Writer) (uint64, time.Duration, error) {
	s, err := sim.New(o.Simulation())
	if err != nil {
		return 0, 0, fmt.Errorf("visbench: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// The inserters: Inserters goroutines draining batches; each day's
	// WaitGroup says when its last batch is in.
	batches := make(chan batch, 2*o.Inserters)
	pool := sync.Pool{New: func() any { return make([]event.Event, 0, o.BatchSize) }}
	dayDone := make([]sync.WaitGroup, len(todo))
	var (
		mu       sync.Mutex
		inserted uint64
		wg       sync.WaitGroup
	)
	for range o.Inserters {
		wg.Go(func() {
			for b := range batches {
				if ctx.Err() == nil {
					if err := st.InsertEvents(ctx, b.evs); err != nil {
						cancel(fmt.Errorf("visbench: insert %d events of %s: %w", len(b.evs), todo[b.day].Format(time.DateOnly), err))
					} else {
						mu.Lock()
						inserted += uint64(len(b.evs))
						mu.Unlock()
					}
				}
				pool.Put(b.evs[:0])
				dayDone[b.day].Done()
			}
		})
	}
	// Days are recorded on their own goroutine, in order, so the
	// simulator never waits for a day's last insert.
	recorded := make(chan error, 1)
	dayCounts := make([]uint64, len(todo))
	dayStart := make([]time.Time, len(todo))
	dayEnded := make(chan int, len(todo))
	go func() {
		var err error
		for i := range dayEnded {
			dayDone[i].Wait()
			if err == nil && ctx.Err() == nil {
				err = recordDay(ctx, admin, o.Database, todo[i], dayCounts[i], migrations, time.Since(dayStart[i]))
				if err != nil {
					cancel(err)
				}
			}
		}
		recorded <- err
	}()

	var (
		gen      time.Duration
		cur      = -1 // index into todo of the day being generated, -1 when none
		evs      = pool.Get().([]event.Event)
		offset   int64
		started  = time.Now()
		lastLine time.Time
	)
	flush := func() {
		if len(evs) == 0 {
			return
		}
		dayDone[cur].Add(1)
		select {
		case batches <- batch{day: cur, evs: evs}:
		case <-ctx.Done():
			dayDone[cur].Done()
		}
		evs = pool.Get().([]event.Event)
	}
	endDay := func() {
		flush()
		dayEnded <- cur
		cur = -1
	}
	from, _ := o.Span()
	t0 := time.Now()
	for line, ok := s.Next(); ok && ctx.Err() == nil; line, ok = s.Next() {
		offset++
		if !line.Good {
			continue
		}
		ev := line.Event
		day := from.AddDate(0, 0, int(time.UnixMilli(ev.EventTimeMs).Sub(from)/(24*time.Hour)))
		if cur >= 0 && !todo[cur].Equal(day) {
			gen += time.Since(t0)
			endDay()
			t0 = time.Now()
		}
		if day.After(todo[len(todo)-1]) {
			break // the rest is for a later run
		}
		if cur < 0 {
			i := slices.IndexFunc(todo, day.Equal)
			if i < 0 {
				continue // a day loaded before, or left for a later run
			}
			cur, dayStart[i] = i, time.Now()
		}
		// What only the ingest can know: the raw record's coordinates,
		// which the event id derives from, and when it was parsed.
		ev.Topic, ev.Partition, ev.Offset = topic, int32(offset%6), offset/6
		ev.EventID = event.ID(ev.Topic, ev.Partition, ev.Offset)
		ev.IngestTimeMs = ev.EventTimeMs + 50 + offset%400
		evs = append(evs, ev)
		dayCounts[cur]++
		if len(evs) == o.BatchSize {
			gen += time.Since(t0)
			flush()
			t0 = time.Now()
		}
		if time.Since(lastLine) > 5*time.Second {
			lastLine = time.Now()
			mu.Lock()
			n := inserted
			mu.Unlock()
			el := time.Since(started)
			fmt.Fprintf(progress, "loading %s: %d events inserted in %s (%.0f/s), simulating %s\n",
				o.Database, n, el.Round(time.Second), benchkit.Rate(int(n), el), time.UnixMilli(ev.EventTimeMs).UTC().Format("2006-01-02 15:04"))
		}
	}
	gen += time.Since(t0)
	if cur >= 0 && ctx.Err() == nil {
		endDay()
	}
	close(dayEnded)
	close(batches)
	wg.Wait()
	recErr := <-recorded
	if err := context.Cause(ctx); err != nil {
		return inserted, gen, err
	}
	if recErr != nil {
		return inserted, gen, recErr
	}
	for i, n := range dayCounts {
		if n == 0 {
			return inserted, gen, fmt.Errorf("visbench: the simulator gave no events for %s", todo[i].Format(time.DateOnly))
		}
	}
	return inserted, gen, nil
}

func recordDay(ctx context.Context, conn driver.Conn, db string, day time.Time, n uint64, migrations uint32, took time.Duration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO `"+db+"`.bench_loaded (day, events, migrations, seconds, loaded_at)")
	if err != nil {
		return fmt.Errorf("visbench: record %s: %w", day.Format(time.DateOnly), err)
	}
	defer b.Close()
	if err := b.Append(day, n, migrations, took.Seconds(), time.Now().UTC()); err != nil {
		return fmt.Errorf("visbench: record %s: %w", day.Format(time.DateOnly), err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("visbench: record %s: %w", day.Format(time.DateOnly), err)
	}
	return nil
}

// tableSizes reads the database's active parts from system.parts.
func tableSizes(ctx context.Context, conn driver.Conn, db string) ([]TableSize, error) {
	rows, err := conn.Query(ctx, `SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes), count(), uniqExact(partition)
		FROM system.parts WHERE database = ? AND active GROUP BY table ORDER BY sum(bytes_on_disk) DESC`, db)
	if err != nil {
		return nil, fmt.Errorf("visbench: table sizes: %w", err)
	}
	defer rows.Close()
	var out []TableSize
	for rows.Next() {
		var t TableSize
		if err := rows.Scan(&t.Table, &t.Rows, &t.Bytes, &t.RawBytes, &t.Parts, &t.Partitions); err != nil {
			return nil, fmt.Errorf("visbench: table sizes: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
