// Package ingestbench measures the ingest path on the real services in one
// run, so that its numbers are comparable: the Kafka consume-only rate, the
// ClickHouse insert-only rate, and the end-to-end rate of the ingest service
// (Kafka → parse → ClickHouse and the events topic → commit) on the same
// records, with the service's memory at steady state. `agentwatch bench
// ingest` runs it.
package ingestbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

// Options say what to measure. The zero value of each field is its default.
// Brokers, ClickHouse, Partitions and Keep are deliberately the same in
// every benchmark (benchkit.Defaults defaults them), yet plain fields, so
// that an Options literal names them directly.
type Options struct {
	// Brokers are the Kafka brokers; default 127.0.0.1:9092.
	Brokers []string
	// ClickHouse are native-protocol addresses; default 127.0.0.1:9000.
	ClickHouse []string
	// Records is how many raw lines to measure with; default 1,000,000.
	Records int
	// Partitions of the raw and events topics; default 6.
	Partitions int
	// BatchSize is ingest's batch size, also used for the insert-only
	// measurement; default the ingest.batch_size default.
	BatchSize int
	// Seed selects the simulated traffic; default 1.
	Seed uint64
	// Keep leaves the topics and databases behind for inspection.
	Keep bool
	// Secure, when its Brokers are set, is a second listener of the same
	// cluster (SASL_SSL in production): the consume-only and end-to-end
	// measurements are repeated through it on the same records, so that
	// the report gives the cost of TLS and SASL.
	Secure Listener
	// Rounds is how many end-to-end runs each listener gets when Secure is
	// set, in the order plaintext, secured, secured, plaintext, … so that
	// neither side always runs on a warmer broker; default 3. It is also
	// the number of runs with and without the views under CompareViews.
	Rounds int
	// CompareViews measures what the inventory's materialized views
	// (migration 0005) cost ingest: the insert-only figure again without
	// them, and Rounds end-to-end runs on plaintext without them
	// alternating with runs with them (without, with, with, without, …).
	CompareViews bool
}

// Listener is one listener of the Kafka cluster and the client security
// that reaches it.
type Listener struct {
	Brokers []string
	TLS     config.TLS
	SASL    config.SASL
}

// env is the listener as configuration variables; the password is among
// them, so they go to a config loader, never to a log.
func (l Listener) env() []string {
	env := []string{"AGENTWATCH_KAFKA_BROKERS=" + strings.Join(l.Brokers, ",")}
	if l.TLS.Enabled {
		env = append(env, "AGENTWATCH_KAFKA_TLS_ENABLED=true", "AGENTWATCH_KAFKA_TLS_CA_FILE="+l.TLS.CAFile,
			"AGENTWATCH_KAFKA_TLS_CERT_FILE="+l.TLS.CertFile, "AGENTWATCH_KAFKA_TLS_KEY_FILE="+l.TLS.KeyFile)
	}
	if l.SASL.Mechanism != "" {
		env = append(env, "AGENTWATCH_KAFKA_SASL_MECHANISM="+l.SASL.Mechanism, "AGENTWATCH_KAFKA_SASL_USERNAME="+l.SASL.Username,
			"AGENTWATCH_KAFKA_SASL_PASSWORD="+l.SASL.Password)
	}
	return env
}

// setDefaults is deliberately parallel to detectbench's: the shared options'
// defaults are benchkit.Defaults; these keys, their defaults and limits
// are this benchmark's own.
func (o *Options) setDefaults() error {
	benchkit.Defaults(&o.Brokers, &o.ClickHouse, &o.Partitions)
	benchkit.Default(&o.Records, 1_000_000)
	benchkit.Default(&o.Seed, 1)
	benchkit.Default(&o.Rounds, 3)
	if o.Records < 0 || o.Partitions < 0 || o.BatchSize < 0 {
		return fmt.Errorf("ingestbench: records, partitions and batch size must be positive, got %d, %d, %d", o.Records, o.Partitions, o.BatchSize)
	}
	return nil
}

// Report is the outcome of one Run. Durations are wall-clock times of the
// measured phase only.
type Report struct {
	Records    int
	RawBytes   int64 // total size of the raw lines
	Partitions int
	BatchSize  int
	Produce    time.Duration // writing the raw lines (setup, for reference)
	Consume    time.Duration // kafka.MeasureConsume of Records
	Insert     time.Duration // chstore.MeasureInsert of Records in BatchSize batches
	EndToEnd   time.Duration // ingest service, first record fetched to all Records committed
	// EndToEndWithJoin adds the consumer-group join before the first record.
	EndToEndWithJoin time.Duration
	Events           uint64 // events ingest produced (every line is good)
	DeadLettered     uint64
	// Memory of this process while the ingest service ran, sampled every
	// 250ms after its first batch.
	HeapInuseMax, HeapInuseAvg uint64
	RSSMax, RSSAvg             uint64
	Samples                    int
	// Secured is the protocol and mechanism of Options.Secure ("" when it
	// was not measured), SecureConsume its consume-only time, and
	// PlainRuns and SecureRuns the end-to-end times of every round.
	Secured               string
	SecureConsume         time.Duration
	PlainRuns, SecureRuns []time.Duration
	// PlainCPU and SecureCPU are the CPU time this process (the ingest
	// service and the sampler, so the Kafka client's TLS and SASL work
	// included) used in each of those runs: unlike wall time, it barely
	// moves when other work shares the machine.
	PlainCPU, SecureCPU []time.Duration
	// CPU is the CPU time of the first end-to-end run.
	CPU time.Duration
	// Under Options.CompareViews: InsertNoViews is the insert-only time
	// without the views (Insert is with them), and ViewsRuns and
	// NoViewsRuns the end-to-end times of every round with and without
	// them (the first end-to-end run is the first with them).
	InsertNoViews          time.Duration
	ViewsRuns, NoViewsRuns []time.Duration
}

// ViewsRatio is the end-to-end rate with the views over the rate without
// them, both the median of their rounds (0 when not measured): 0.95 means
// the views cost ingest 5%.
func (r Report) ViewsRatio() float64 {
	if len(r.ViewsRuns) == 0 || len(r.NoViewsRuns) == 0 {
		return 0
	}
	return median(r.NoViewsRuns).Seconds() / median(r.ViewsRuns).Seconds()
}

// median is the middle of ds, or the mean of the two middle values (0
// when empty). Rounds on a shared machine have outliers; the median
// ignores one slow round where the mean would not.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuPerRecord is the mean CPU time of runs per record, in µs.
func cpuPerRecord(runs []time.Duration, records int) float64 {
	return float64(mean(runs).Microseconds()) / float64(max(records, 1))
}

// mean is the average of ds (0 when empty).
func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// SecureRatio is the secured end-to-end rate over the plaintext one, both
// the median of their rounds (0 when Secure was not measured).
func (r Report) SecureRatio() float64 {
	if len(r.SecureRuns) == 0 || len(r.PlainRuns) == 0 {
		return 0
	}
	return median(r.PlainRuns).Seconds() / median(r.SecureRuns).Seconds()
}

// ConsumeRate, InsertRate and EndToEndRate are records per second.
func (r Report) ConsumeRate() float64  { return benchkit.Rate(r.Records, r.Consume) }
func (r Report) InsertRate() float64   { return benchkit.Rate(r.Records, r.Insert) }
func (r Report) EndToEndRate() float64 { return benchkit.Rate(r.Records, r.EndToEnd) }

// Limit is the slower of the consume-only and insert-only rates: what
// ingest could reach if parsing and the events topic were free.
func (r Report) Limit() float64 { return min(r.ConsumeRate(), r.InsertRate()) }

// Efficiency is the end-to-end rate as a percentage of Limit.
func (r Report) Efficiency() float64 {
	return benchkit.Percent(r.EndToEndRate(), r.Limit())
}

// String renders the report as a Markdown table.
func (r Report) String() string {
	var b strings.Builder
	mib := func(v uint64) string { return fmt.Sprintf("%.0f MiB", float64(v)/(1<<20)) }
	avg := float64(r.RawBytes) / float64(max(r.Records, 1))
	fmt.Fprintf(&b, "ingest benchmark: %d records, %.0f B/line avg, %d partitions, batch %d\n\n", r.Records, avg, r.Partitions, r.BatchSize)
	b.WriteString("| stage | records | time | records/s | MB/s | vs. slower raw limit |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, d time.Duration, vs string) {
		benchkit.ThroughputRow(&b, name, r.Records, r.RawBytes, d, vs)
	}
	row("produce raw lines (setup)", r.Produce, "")
	row("Kafka consume only (kafka-go group reader)", r.Consume, "")
	row("ClickHouse insert only (chstore, batch "+strconv.Itoa(r.BatchSize)+")", r.Insert, "")
	row("end to end (ingest service, from first record)", r.EndToEnd, fmt.Sprintf("%.0f%%", r.Efficiency()))
	row("end to end incl. consumer-group join", r.EndToEndWithJoin, fmt.Sprintf("%.0f%%", 100*benchkit.Rate(r.Records, r.EndToEndWithJoin)/r.Limit()))
	if r.Secured != "" {
		row("Kafka consume only over "+r.Secured, r.SecureConsume, fmt.Sprintf("%.0f%% of plaintext", 100*r.Consume.Seconds()/r.SecureConsume.Seconds()))
		cpu := func(runs []time.Duration, i int) string {
			if i >= len(runs) {
				return ""
			}
			return fmt.Sprintf("CPU %.1f µs/record", float64(runs[i].Microseconds())/float64(max(r.Records, 1)))
		}
		for i := range r.PlainRuns {
			row(fmt.Sprintf("end to end, plaintext, round %d", i+1), r.PlainRuns[i], cpu(r.PlainCPU, i))
		}
		for i := range r.SecureRuns {
			row(fmt.Sprintf("end to end over %s, round %d", r.Secured, i+1), r.SecureRuns[i], cpu(r.SecureCPU, i))
		}
	}
	if r.InsertNoViews > 0 {
		row("ClickHouse insert only, without the inventory views", r.InsertNoViews, fmt.Sprintf("with them: %.1f%% of this rate", 100*r.InsertNoViews.Seconds()/r.Insert.Seconds()))
	}
	for i := range r.ViewsRuns {
		row(fmt.Sprintf("end to end with the inventory views, round %d", i+1), r.ViewsRuns[i], "")
	}
	for i := range r.NoViewsRuns {
		row(fmt.Sprintf("end to end without the inventory views, round %d", i+1), r.NoViewsRuns[i], "")
	}
	fmt.Fprintf(&b, "\ningest: %d events, %d dead-lettered; memory at steady state (%d samples): heap in use max %s avg %s, RSS max %s avg %s\n",
		r.Events, r.DeadLettered, r.Samples, mib(r.HeapInuseMax), mib(r.HeapInuseAvg), mib(r.RSSMax), mib(r.RSSAvg))
	if r.Secured != "" {
		ratio := r.SecureRatio()
		fmt.Fprintf(&b, "\nend to end, median of %d round(s) each: plaintext %.0f records/s, %s %.0f records/s: the secured path reaches %.1f%% of plaintext (costs %.1f%%)\n",
			len(r.PlainRuns), benchkit.Rate(r.Records, median(r.PlainRuns)), r.Secured, benchkit.Rate(r.Records, median(r.SecureRuns)), 100*ratio, 100*(1-ratio))
		best := slices.Min(r.PlainRuns).Seconds() / slices.Min(r.SecureRuns).Seconds()
		fmt.Fprintf(&b, "end to end, fastest round each: plaintext %.0f records/s, %s %.0f records/s: %.1f%% of plaintext (costs %.1f%%)\n",
			benchkit.Rate(r.Records, slices.Min(r.PlainRuns)), r.Secured, benchkit.Rate(r.Records, slices.Min(r.SecureRuns)), 100*best, 100*(1-best))
		if len(r.PlainCPU) > 0 && len(r.SecureCPU) > 0 {
			p, q := cpuPerRecord(r.PlainCPU, r.Records), cpuPerRecord(r.SecureCPU, r.Records)
			fmt.Fprintf(&b, "ingest process CPU, mean per record: plaintext %.2f µs, %s %.2f µs (%+.1f%%)\n", p, r.Secured, q, 100*(q/p-1))
		}
	}
	if ratio := r.ViewsRatio(); ratio > 0 {
		fmt.Fprintf(&b, "\nend to end, median of %d round(s) each: without the inventory views %.0f records/s, with them %.0f records/s: with the views ingest reaches %.1f%% of the rate without (costs %.1f%%)\n",
			len(r.ViewsRuns), benchkit.Rate(r.Records, median(r.NoViewsRuns)), benchkit.Rate(r.Records, median(r.ViewsRuns)), 100*ratio, 100*(1-ratio))
	}
	return b.String()
}

// Run creates a raw topic and scratch databases, fills the topic with
// o.Records simulated lines (every format, no garbage), and measures in
// turn: consume only, insert only, end to end. It removes what it created
// unless o.Keep. progress receives a line per step (may be io.Discard).
//
// Deliberately parallel to detectbench's Run: each step's measurement and
// progress lines are this benchmark's own; what the steps share is benchkit.
func Run(ctx context.Context, o Options, log *slog.Logger, progress io.Writer) (Report, error) {
	log, suffix, err := benchkit.Begin(o.setDefaults, log)
	if err != nil {
		return Report{}, err
	}
	raw := "bench.raw." + suffix
	env := []string{
		"AGENTWATCH_KAFKA_BROKERS=" + strings.Join(o.Brokers, ","),
		"AGENTWATCH_KAFKA_RAW_TOPICS=" + raw,
		"AGENTWATCH_KAFKA_EVENTS_TOPIC=bench.events." + suffix,
		"AGENTWATCH_KAFKA_DEAD_LETTER_TOPIC=bench.deadletter." + suffix,
		"AGENTWATCH_KAFKA_INGEST_GROUP=bench-ingest-" + suffix,
		"AGENTWATCH_KAFKA_PARTITIONS=" + strconv.Itoa(o.Partitions),
		"AGENTWATCH_CLICKHOUSE_ADDR=" + strings.Join(o.ClickHouse, ","),
		"AGENTWATCH_CLICKHOUSE_DATABASE=bench_ingest_" + suffix,
		"AGENTWATCH_HTTP_ADDR=",
	}
	if o.BatchSize > 0 {
		env = append(env, "AGENTWATCH_INGEST_BATCH_SIZE="+strconv.Itoa(o.BatchSize))
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		return Report{}, fmt.Errorf("ingestbench: config: %w", err)
	}
	rep := Report{Records: o.Records, Partitions: o.Partitions, BatchSize: cfg.Ingest.BatchSize}
	var secCfg config.Config
	var secure kafka.Security
	if len(o.Secure.Brokers) > 0 {
		if secCfg, err = config.LoadEnv("", nil, append(slices.Clone(env), o.Secure.env()...)); err != nil {
			return Report{}, fmt.Errorf("ingestbench: config of the secured listener: %w", err)
		}
		if secure, err = kafka.SecurityOf(secCfg.Kafka); err != nil {
			return Report{}, fmt.Errorf("ingestbench: %w", err)
		}
		if err := kafka.Check(ctx, o.Secure.Brokers, secure); err != nil {
			return Report{}, fmt.Errorf("ingestbench: %w", err)
		}
		rep.Secured = secure.String()
	}
	insertDB := "bench_insert_" + suffix

	topics := ingest.Topics(cfg)
	if err := benchkit.EnsureTopics(ctx, o.Brokers, kafka.Security{}, topics...); err != nil {
		return rep, fmt.Errorf("ingestbench: %w", err)
	}
	if !o.Keep {
		var names []string
		for _, t := range topics {
			names = append(names, t.Name)
		}
		// The database names are ours: bench_{ingest,insert}_<digits>.
		defer benchkit.Scratch{Brokers: o.Brokers, ClickHouse: o.ClickHouse, Topics: names, Databases: []string{cfg.ClickHouse.Database, insertDB}}.Remove(log, "ingestbench")
	}

	// 1. Fill the raw topic (not measured as a rate to compare).
	start := time.Now()
	n, err := produce(ctx, o, raw, progress)
	rep.RawBytes = n
	rep.Produce = time.Since(start)
	if err != nil {
		return rep, err
	}

	// 2. Consume only.
	rep.Consume, err = benchkit.MeasureConsume(ctx, progress, kafka.ReaderConfig{
		Brokers: o.Brokers, GroupID: "bench-consume", Topics: []string{raw}, MaxBytes: 2 * cfg.Kafka.MaxMessageBytes,
	}, o.Records, "records")
	if err != nil {
		return rep, fmt.Errorf("ingestbench: %w", err)
	}

	// 3. Insert only, into a database of its own.
	fmt.Fprintf(progress, "measuring ClickHouse insert of %d rows in batches of %d...\n", o.Records, rep.BatchSize)
	st, err := chstore.Open(ctx, chstore.Options{Addr: o.ClickHouse, Database: insertDB}, log)
	if err != nil {
		return rep, fmt.Errorf("ingestbench: %w", err)
	}
	err = st.Migrate(ctx)
	if err == nil {
		rep.Insert, err = chstore.MeasureInsert(ctx, st, o.Records, rep.BatchSize)
	}
	st.Close()
	if err != nil {
		return rep, fmt.Errorf("ingestbench: %w", err)
	}
	fmt.Fprintf(progress, "  %s, %.0f rows/s\n", rep.Insert.Round(time.Millisecond), rep.InsertRate())
	if o.CompareViews {
		fmt.Fprintf(progress, "measuring ClickHouse insert of %d rows without the inventory views...\n", o.Records)
		db := insertDB + "_noviews"
		if !o.Keep {
			defer benchkit.Scratch{ClickHouse: o.ClickHouse, Databases: []string{db}}.Remove(log, "ingestbench")
		}
		if rep.InsertNoViews, err = insertWithoutViews(ctx, o, db, rep.BatchSize, log); err != nil {
			return rep, err
		}
		fmt.Fprintf(progress, "  %s, %.0f rows/s\n", rep.InsertNoViews.Round(time.Millisecond), benchkit.Rate(o.Records, rep.InsertNoViews))
	}

	// 4. End to end.
	fmt.Fprintf(progress, "measuring the ingest service end to end on %d records...\n", o.Records)
	if err := endToEnd(ctx, cfg, &rep, log, progress); err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "  %s, %.0f records/s (%.0f%% of the slower raw limit)\n", rep.EndToEnd.Round(time.Millisecond), rep.EndToEndRate(), rep.Efficiency())
	if o.CompareViews {
		if err := compareViews(ctx, o, cfg, &rep, log, progress); err != nil {
			return rep, err
		}
	}
	if rep.Secured == "" {
		return rep, nil
	}

	// 5. The secured listener: consume only, then end-to-end rounds
	// alternating with plaintext ones (the run above is the first).
	rep.SecureConsume, err = benchkit.MeasureConsume(ctx, progress, kafka.ReaderConfig{
		Brokers: o.Secure.Brokers, Security: secure, GroupID: "bench-consume-secure", Topics: []string{raw}, MaxBytes: 2 * cfg.Kafka.MaxMessageBytes,
	}, o.Records, "records over "+rep.Secured)
	if err != nil {
		return rep, fmt.Errorf("ingestbench: %w", err)
	}
	rep.PlainRuns, rep.PlainCPU = append(rep.PlainRuns, rep.EndToEnd), append(rep.PlainCPU, rep.CPU)
	for i := 1; len(rep.SecureRuns) < o.Rounds || len(rep.PlainRuns) < o.Rounds; i++ {
		// plaintext, secured, secured, plaintext, plaintext, secured, …
		onSecure := i%4 == 1 || i%4 == 2
		run, name, c := cfg, "plaintext", cfg
		if onSecure {
			run, name = secCfg, rep.Secured
		}
		if (onSecure && len(rep.SecureRuns) >= o.Rounds) || (!onSecure && len(rep.PlainRuns) >= o.Rounds) {
			continue
		}
		// A group and a database of the round's own: it reads every record
		// again and inserts into empty tables, like the first run.
		round := "_r" + strconv.Itoa(i)
		run.Kafka.IngestGroup = c.Kafka.IngestGroup + round
		run.ClickHouse.Database = c.ClickHouse.Database + round
		if !o.Keep {
			defer benchkit.Scratch{ClickHouse: o.ClickHouse, Databases: []string{run.ClickHouse.Database}}.Remove(log, "ingestbench")
		}
		fmt.Fprintf(progress, "measuring the ingest service end to end over %s on %d records...\n", name, o.Records)
		var r Report
		r.Records = rep.Records
		if err := endToEnd(ctx, run, &r, log, progress); err != nil {
			return rep, err
		}
		fmt.Fprintf(progress, "  %s, %.0f records/s\n", r.EndToEnd.Round(time.Millisecond), r.EndToEndRate())
		if onSecure {
			rep.SecureRuns, rep.SecureCPU = append(rep.SecureRuns, r.EndToEnd), append(rep.SecureCPU, r.CPU)
		} else {
			rep.PlainRuns, rep.PlainCPU = append(rep.PlainRuns, r.EndToEnd), append(rep.PlainCPU, r.CPU)
		}
	}
	return rep, nil
}

// withoutViews migrates db and drops the inventory's materialized views
// from it, so that inserts into events feed nothing else.
func withoutViews(ctx context.Context, o Options, db string, log *slog.Logger) (*chstore.Store, error) {
	st, err := chstore.Open(ctx, chstore.Options{Addr: o.ClickHouse, Database: db}, log)
	if err != nil {
		return nil, fmt.Errorf("ingestbench: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("ingestbench: %w", err)
	}
	if err := st.DropInventoryViews(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("ingestbench: %w", err)
	}
	return st, nil
}

// insertWithoutViews is the insert-only measurement into db without the
// views.
func insertWithoutViews(ctx context.Context, o Options, db string, batch int, log *slog.Logger) (time.Duration, error) {
	st, err := withoutViews(ctx, o, db, log)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	d, err := chstore.MeasureInsert(ctx, st, o.Records, batch)
	if err != nil {
		return 0, fmt.Errorf("ingestbench: %w", err)
	}
	return d, nil
}

// compareViews runs the end-to-end rounds without and with the inventory
// views, each with a consumer group and a database of its own, in the
// order without, with, with, without, … (the first run with them is the
// one already made).
func compareViews(ctx context.Context, o Options, cfg config.Config, rep *Report, log *slog.Logger, progress io.Writer) error {
	rep.ViewsRuns = append(rep.ViewsRuns, rep.EndToEnd)
	for i := 1; len(rep.ViewsRuns) < o.Rounds || len(rep.NoViewsRuns) < o.Rounds; i++ {
		noViews := i%4 == 1 || i%4 == 2
		if (noViews && len(rep.NoViewsRuns) >= o.Rounds) || (!noViews && len(rep.ViewsRuns) >= o.Rounds) {
			continue
		}
		run := cfg
		round := "_v" + strconv.Itoa(i)
		run.Kafka.IngestGroup = cfg.Kafka.IngestGroup + round
		run.ClickHouse.Database = cfg.ClickHouse.Database + round
		if !o.Keep {
			defer benchkit.Scratch{ClickHouse: o.ClickHouse, Databases: []string{run.ClickHouse.Database}}.Remove(log, "ingestbench")
		}
		name := "with"
		if noViews {
			// The service's own migration finds 0005 applied and leaves
			// the views dropped.
			st, err := withoutViews(ctx, o, run.ClickHouse.Database, log)
			if err != nil {
				return err
			}
			st.Close()
			name = "without"
		}
		fmt.Fprintf(progress, "measuring the ingest service end to end %s the inventory views on %d records...\n", name, o.Records)
		r := Report{Records: rep.Records}
		if err := endToEnd(ctx, run, &r, log, progress); err != nil {
			return err
		}
		fmt.Fprintf(progress, "  %s, %.0f records/s\n", r.EndToEnd.Round(time.Millisecond), r.EndToEndRate())
		if noViews {
			rep.NoViewsRuns = append(rep.NoViewsRuns, r.EndToEnd)
		} else {
			rep.ViewsRuns = append(rep.ViewsRuns, r.EndToEnd)
		}
	}
	return nil
}

// produce writes o.Records simulated good lines to topic.
func produce(ctx context.Context, o Options, topic string, progress io.Writer) (int64, error) {
	// Size the simulator from a probe: traffic follows a diurnal curve.
	const span = 30 * time.Minute
	start := time.Now().Add(-span)
	probe, err := sim.New(sim.Config{Seed: o.Seed, Agents: 500, Start: start, Duration: span, RateScale: 1, Incidents: []sim.IncidentSpec{}})
	if err != nil {
		return 0, fmt.Errorf("ingestbench: %w", err)
	}
	n := 0
	for _, ok := probe.Next(); ok; _, ok = probe.Next() {
		n++
	}
	s, err := sim.New(sim.Config{Seed: o.Seed, Agents: 500, Start: start, Duration: span, RateScale: float64(o.Records) * 1.2 / float64(max(n, 1))})
	if err != nil {
		return 0, fmt.Errorf("ingestbench: %w", err)
	}
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: o.Brokers, Topic: topic, BatchSize: 10000, BatchBytes: 3 << 20}, nil)
	if err != nil {
		return 0, fmt.Errorf("ingestbench: %w", err)
	}
	defer w.Close()
	var bytes int64
	msgs := make([]bus.Message, 0, 20000)
	step := max(o.Records/20, 1)
	for done := 0; done < o.Records; {
		msgs = msgs[:0]
		for len(msgs) < cap(msgs) && done+len(msgs) < o.Records {
			line, ok := s.Next()
			if !ok {
				return bytes, fmt.Errorf("ingestbench: the simulator ran out after %d lines; raise the rate", done+len(msgs))
			}
			bytes += int64(len(line.Raw))
			msgs = append(msgs, bus.Message{Value: line.Raw})
		}
		if err := w.Write(ctx, msgs...); err != nil {
			return bytes, fmt.Errorf("ingestbench: produce after %d lines: %w", done, err)
		}
		before := done
		done += len(msgs)
		if done/step != before/step || done == o.Records {
			fmt.Fprintf(progress, "producing raw lines: %d/%d (%.0f%%)\n", done, o.Records, 100*float64(done)/float64(o.Records))
		}
	}
	return bytes, nil
}

func endToEnd(ctx context.Context, cfg config.Config, rep *Report, log *slog.Logger, progress io.Writer) error {
	runtime.GC()
	debug.FreeOSMemory()
	svc, err := ingest.NewService(ctx, cfg, log, prometheus.NewRegistry())
	if err != nil {
		return fmt.Errorf("ingestbench: %w", err)
	}
	defer svc.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	cpu0 := processCPU()
	start := time.Now()
	go func() { done <- svc.Ingester.Run(runCtx) }()

	var (
		mu              sync.Mutex
		heapSum, rssSum uint64
		stopSampling    = make(chan struct{})
		samplerDone     = make(chan struct{})
		want            = uint64(rep.Records)
		lastProgress    time.Time
	)
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			if svc.Ingester.Stats().Batches == 0 {
				continue // the group join and first fetch are not steady state
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			rss := selfRSS()
			mu.Lock()
			rep.Samples++
			rep.HeapInuseMax = max(rep.HeapInuseMax, ms.HeapInuse)
			rep.RSSMax = max(rep.RSSMax, rss)
			heapSum += ms.HeapInuse
			rssSum += rss
			mu.Unlock()
		}
	}()
	var runErr error
	for {
		st := svc.Ingester.Stats()
		if st.Committed >= want {
			rep.EndToEndWithJoin = time.Since(start)
			rep.CPU = processCPU() - cpu0
			// Like the consume-only figure, the rate is timed from the
			// first record: the group join is a one-off start-up cost.
			rep.EndToEnd = time.Since(st.FirstFetch)
			rep.Events, rep.DeadLettered = st.Events, st.DeadLettered
			break
		}
		if time.Since(lastProgress) > 5*time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(progress, "  ingested %d/%d (%.0f%%)\n", st.Committed, want, 100*float64(st.Committed)/float64(want))
		}
		select {
		case err := <-done:
			runErr = fmt.Errorf("ingestbench: ingest stopped after %d records: %w", st.Committed, err)
		case <-ctx.Done():
			runErr = fmt.Errorf("ingestbench: %d of %d records ingested: %w", st.Committed, want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	close(stopSampling)
	<-samplerDone
	if rep.Samples > 0 {
		rep.HeapInuseAvg = heapSum / uint64(rep.Samples)
		rep.RSSAvg = rssSum / uint64(rep.Samples)
	}
	if runErr != nil {
		return runErr
	}
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("ingestbench: ingest: %w", err)
	}
	return nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS reads this process's resident set size; 0 where /proc is missing.
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
