package evidence

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// errEnough stops the event source once one event past the cap was seen.
var errEnough = errors.New("event cap reached")

// fileWriter writes one bundle file, hashing and counting what it writes.
type fileWriter struct {
	path string
	f    *os.File
	h    hash.Hash
	n    countWriter
	*bufio.Writer
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func createFile(dir, name string) (*fileWriter, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode|0o200)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	w := &fileWriter{path: path, f: f, h: sha256.New()}
	w.Writer = bufio.NewWriterSize(io.MultiWriter(f, w.h, &w.n), 1<<16)
	return w, nil
}

// finish flushes, syncs and closes the file, makes it read-only and
// returns its manifest entry.
func (w *fileWriter) finish() (File, error) {
	name := filepath.Base(w.path)
	err := w.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(w.path, FileMode)
	}
	if err != nil {
		return File{}, fmt.Errorf("write %s: %w", name, err)
	}
	return File{Name: name, SHA256: hex.EncodeToString(w.h.Sum(nil)), Size: int64(w.n)}, nil
}

// abort closes the file after a failure; the caller removes the directory.
func (w *fileWriter) abort() { w.f.Close() }

// writeFile writes one whole file with fn.
func writeFile(dir, name string, fn func(w *fileWriter) error) (File, error) {
	w, err := createFile(dir, name)
	if err != nil {
		return File{}, err
	}
	if err := fn(w); err != nil {
		w.abort()
		return File{}, fmt.Errorf("write %s: %w", name, err)
	}
	return w.finish()
}

// writeContent writes every file but the manifest into dir and returns the
// manifest without its chain position.
func writeContent(ctx context.Context, req *Request, src EventSource, dir string, now time.Time) (Manifest, error) {
	a := &req.Anomaly
	m := Manifest{
		V: ManifestVersion, BundleID: req.ID, AgentID: a.AgentID, AnomalyID: a.ID, IncidentID: req.IncidentID,
		CreatedMs: now.UnixMilli(),
		FromMs:    a.WindowStartMs - req.Before.Milliseconds(),
		ToMs:      a.WindowEndMs + req.After.Milliseconds(),
		MaxEvents: int64(req.MaxEvents),
	}
	if m.ToMs <= m.FromMs {
		m.ToMs = m.FromMs + 1 // an empty anomaly window still names its instant
	}
	t := newTally(m.FromMs, m.ToMs)
	evFiles, err := writeEvents(ctx, req, src, dir, &m, t)
	if err != nil {
		return Manifest{}, err
	}
	m.Files = append(m.Files, evFiles...)

	scores := slices.Clone(req.Scores)
	slices.SortStableFunc(scores, func(x, y anomaly.Score) int { return cmp.Compare(x.WindowStartMs, y.WindowStartMs) })

	f, err := writeFile(dir, AnomalyJSON, func(w *fileWriter) error {
		b, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		return Manifest{}, err
	}
	m.Files = append(m.Files, f)

	if f, err = writeFile(dir, ScoresCSV, func(w *fileWriter) error { return writeScores(w, scores) }); err != nil {
		return Manifest{}, err
	}
	m.Files = append(m.Files, f)

	feats := plotFeatures(a, scores)
	if f, err = writeFile(dir, SummaryTXT, func(w *fileWriter) error {
		return writeSummary(w, req, &m, t, scores, now)
	}); err != nil {
		return Manifest{}, err
	}
	m.Files = append(m.Files, f)

	if err := ctx.Err(); err != nil {
		return Manifest{}, err
	}
	if f, err = writeFile(dir, PlotPNG, func(w *fileWriter) error {
		return writePlot(w, a, &m, t, scores, feats)
	}); err != nil {
		return Manifest{}, err
	}
	m.Files = append(m.Files, f)
	return m, nil
}

// eventsHeader is events.csv's header: the canonical JSON field names,
// with event_time added in RFC 3339 for people.
var eventsHeader = []string{
	"event_id", "event_time", "event_time_ms", "ingest_time_ms", "agent_id", "identity_source", "unattributed",
	"credential_id", "source_ip", "method", "route", "path", "query_params", "status", "request_bytes",
	"response_bytes", "duration_us", "user_agent", "gateway", "upstream", "request_id", "format", "topic",
	"partition", "offset",
}

// writeEvents streams the window's events into events.jsonl and
// events.csv and tallies them for the summary and the plot.
func writeEvents(ctx context.Context, req *Request, src EventSource, dir string, m *Manifest, t *tally) ([]File, error) {
	jw, err := createFile(dir, EventsJSONL)
	if err != nil {
		return nil, err
	}
	cw, err := createFile(dir, EventsCSV)
	if err != nil {
		jw.abort()
		return nil, err
	}
	csvw := csv.NewWriter(cw)
	fail := func(err error) ([]File, error) {
		jw.abort()
		cw.abort()
		return nil, err
	}
	if err := csvw.Write(eventsHeader); err != nil {
		return fail(fmt.Errorf("write %s: %w", EventsCSV, err))
	}
	var line []byte
	row := make([]string, len(eventsHeader))
	err = src.Events(ctx, req.Anomaly.AgentID, m.FromMs, m.ToMs, func(e *event.Event) error {
		if m.Events == m.MaxEvents {
			m.Truncated = true
			return errEnough
		}
		if m.Events&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line = append(event.AppendJSON(line[:0], e), '\n')
		if _, err := jw.Write(line); err != nil {
			return fmt.Errorf("write %s: %w", EventsJSONL, err)
		}
		if err := csvw.Write(csvRow(row, e)); err != nil {
			return fmt.Errorf("write %s: %w", EventsCSV, err)
		}
		m.Events++
		t.add(e)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return fail(fmt.Errorf("read events of agent %q from %d to %d: %w", clip(req.Anomaly.AgentID, 200), m.FromMs, m.ToMs, err))
	}
	csvw.Flush()
	if err := csvw.Error(); err != nil {
		return fail(fmt.Errorf("write %s: %w", EventsCSV, err))
	}
	jf, err := jw.finish()
	if err != nil {
		cw.abort()
		return nil, err
	}
	cf, err := cw.finish()
	if err != nil {
		return nil, err
	}
	return []File{jf, cf}, nil
}

// csvRow fills row with e's fields in eventsHeader's order.
func csvRow(row []string, e *event.Event) []string {
	var q []byte
	q = append(q, '[')
	for i, p := range e.QueryParams {
		if i > 0 {
			q = append(q, ',')
		}
		q = event.AppendJSONString(q, p)
	}
	q = append(q, ']')
	row = append(row[:0],
		cell(e.EventID),
		time.UnixMilli(e.EventTimeMs).UTC().Format("2006-01-02T15:04:05.000Z"),
		strconv.FormatInt(e.EventTimeMs, 10),
		strconv.FormatInt(e.IngestTimeMs, 10),
		cell(e.AgentID), cell(e.IdentitySource), strconv.FormatBool(e.Unattributed),
		cell(e.CredentialID), cell(e.SourceIP), cell(e.Method), cell(e.Route), cell(e.Path),
		string(q),
		strconv.FormatUint(uint64(e.Status), 10),
		strconv.FormatUint(e.RequestBytes, 10),
		strconv.FormatUint(e.ResponseBytes, 10),
		strconv.FormatUint(e.DurationUs, 10),
		cell(e.UserAgent), cell(e.Gateway), cell(e.Upstream), cell(e.RequestID), cell(e.Format), cell(e.Topic),
		strconv.FormatInt(int64(e.Partition), 10),
		strconv.FormatInt(e.Offset, 10),
	)
	return row
}

// cell prepares an attacker-controlled string for events.csv: invalid
// UTF-8 becomes U+FFFD (as in events.jsonl), and a value a spreadsheet
// would run as a formula (starting with = + - @, tab or carriage return)
// gets a leading apostrophe (OWASP's CSV injection advice). encoding/csv
// does the quoting of commas, quotes and newlines. events.jsonl keeps the
// exact values.
func cell(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// writeScores writes scores.csv: per window, the score and per feature
// the observed value, the baseline's expected value and the surprise.
func writeScores(w io.Writer, scores []anomaly.Score) error {
	cw := csv.NewWriter(w)
	head := []string{"window_start", "window_start_ms", "window_end_ms", "score", "severity", "trained", "peer_baseline", "late"}
	for id := range features.NumFeatures {
		n := id.String()
		head = append(head, n, n+"_expected", n+"_surprise")
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	row := make([]string, 0, len(head))
	cellOf := func(xs []float64, i features.ID) string {
		if int(i) < len(xs) {
			return num(xs[i])
		}
		return ""
	}
	for _, s := range scores {
		row = append(row[:0],
			time.UnixMilli(s.WindowStartMs).UTC().Format(time.RFC3339),
			strconv.FormatInt(s.WindowStartMs, 10), strconv.FormatInt(s.WindowEndMs, 10),
			num(s.Score), cell(s.Severity), strconv.FormatBool(s.Trained), strconv.FormatBool(s.PeerBaseline),
			strconv.Itoa(s.Late))
		for id := range features.NumFeatures {
			row = append(row, cellOf(s.Values, id), cellOf(s.Expected, id), cellOf(s.Surprise, id))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func num(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// Bounds on what the tally keeps per bundle, whatever the events hold.
const (
	maxTallyKeys = 10_000
	plotBuckets  = 240
)

// tally counts the bundle's events for the summary and the plot in bounded
// memory.
type tally struct {
	// fromMs is the start of the first of the plot's n buckets of
	// bucketMs each (see bucketing).
	fromMs, bucketMs int64
	nb               int
	buckets          [plotBuckets]float64
	n, first, last   int64
	status           [6]int64 // 1xx..5xx, other
	reqBytes         uint64
	respBytes        uint64
	routes           map[string]int64 // "METHOD route"
	otherRoutes      int64            // calls of routes past maxTallyKeys
	ips              map[string]struct{}
	ipsCapped        bool
}

func newTally(fromMs, toMs int64) *tally {
	start, bucket, n := bucketing(fromMs, toMs)
	return &tally{
		fromMs:   start,
		bucketMs: bucket,
		nb:       n,
		routes:   map[string]int64{},
		ips:      map[string]struct{}{},
	}
}

func (t *tally) add(e *event.Event) {
	if b := floorDiv(e.EventTimeMs-t.fromMs, t.bucketMs); b >= 0 && b < int64(t.nb) {
		t.buckets[b]++
	}
	if t.n == 0 {
		t.first, t.last = e.EventTimeMs, e.EventTimeMs
	}
	t.n++
	t.first, t.last = min(t.first, e.EventTimeMs), max(t.last, e.EventTimeMs)
	if c := e.Status / 100; c >= 1 && c <= 5 {
		t.status[c-1]++
	} else {
		t.status[5]++
	}
	t.reqBytes += e.RequestBytes
	t.respBytes += e.ResponseBytes
	key := e.Method + " " + e.Route
	if _, ok := t.routes[key]; ok || len(t.routes) < maxTallyKeys {
		t.routes[key]++ // key is a fresh string, not the event's
	} else {
		t.otherRoutes++
	}
	if _, ok := t.ips[e.SourceIP]; !ok {
		if len(t.ips) < maxTallyKeys {
			t.ips[strings.Clone(e.SourceIP)] = struct{}{}
		} else {
			t.ipsCapped = true
		}
	}
}
