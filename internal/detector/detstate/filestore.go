package detstate

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/platform/journal"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// File names inside a FileStore's directory.
const (
	statesFile      = "states.bin"       // every State, rewritten whole by SaveStates
	checkpointsFile = "checkpoints.json" // every Checkpoint, rewritten whole
	backfillFile    = "backfill.json"    // job -> done_through_ms, rewritten whole
	anomaliesFile   = "anomalies.jsonl"  // one anomaly.Anomaly JSON per line, appended
	scoresFile      = "scores.jsonl"     // one Score per line, appended
)

// statesMagic starts states.bin; the file ends with the CRC-32 (IEEE) of
// everything before it.
const statesMagic = "agentwatch-detstate-v1\n"

// ErrClosed is returned by the methods of a closed FileStore.
var ErrClosed = errors.New("detstate: file store is closed")

// FileStore is the embedded mode's store: what internal/platform/chstore keeps in
// ClickHouse, kept in files in one directory, for the one-process demo.
// States, checkpoints and backfill progress live in memory and every Save
// rewrites their file atomically (temporary file, fsync, rename), so a
// crash leaves the previous or the new version, never a mix. Anomalies and
// scores are appended to JSON-lines files (journal.Journal) and fsynced; a
// line torn by a crash is cut off when the store is opened again.
//
// Each SaveStates rewrites every stored state, which suits the demo's
// thousands of agents, not millions. One process at a time may use a
// directory: the journals' locks (anomalies.jsonl.lock, scores.jsonl.lock)
// are held until Close. A FileStore is safe for concurrent use; the caller
// owns it and must Close it.
type FileStore struct {
	dir string

	mu          sync.Mutex
	closed      bool
	states      map[stateKey]State
	checkpoints map[cpKey]Checkpoint
	backfill    map[string]int64
	// anomalies indexes the stored anomalies by id.
	anomalies map[string]anomalyRef
	anomJ     *journal.Journal
	scoreJ    *journal.Journal
}

type stateKey struct{ kind, key string }

type cpKey struct {
	group, topic string
	partition    int32
}

type anomalyRef struct {
	partition     int32
	windowStartMs int64
}

// OpenFileStore opens the store in dir, creating dir if it is missing, and
// loads what an earlier FileStore saved there.
func OpenFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create detector state directory: %w", err)
	}
	s := &FileStore{
		dir:         dir,
		states:      map[stateKey]State{},
		checkpoints: map[cpKey]Checkpoint{},
		backfill:    map[string]int64{},
		anomalies:   map[string]anomalyRef{},
	}
	var err error
	s.anomJ, err = openJournal(filepath.Join(dir, anomaliesFile), func(line []byte) error {
		var a anomaly.Anomaly
		if err := json.Unmarshal(line, &a); err != nil {
			return err
		}
		if _, ok := s.anomalies[a.ID]; !ok {
			s.anomalies[a.ID] = anomalyRef{a.Partition, a.WindowStartMs}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.scoreJ, err = openJournal(filepath.Join(dir, scoresFile), nil); err != nil {
		s.anomJ.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// load reads the files that Saves rewrite whole.
func (s *FileStore) load() error {
	if err := s.loadStates(); err != nil {
		return err
	}
	var cps []Checkpoint
	if err := readJSON(filepath.Join(s.dir, checkpointsFile), &cps); err != nil {
		return err
	}
	for _, c := range cps {
		s.checkpoints[cpKey{c.Group, c.Topic, c.Partition}] = c
	}
	return readJSON(filepath.Join(s.dir, backfillFile), &s.backfill)
}

// openJournal opens one of the appended files (mode 0644: the demo's
// user reads them), replaying its lines into replay.
func openJournal(path string, replay func([]byte) error) (*journal.Journal, error) {
	j, err := journal.Open(path, journal.Options{Perm: 0o644}, replay)
	if err != nil {
		return nil, damaged(err)
	}
	return j, nil
}

// damaged adds the fix to a journal's error about a line it refused.
func damaged(err error) error {
	if ce := (*journal.CorruptError)(nil); errors.As(err, &ce) {
		return fmt.Errorf("%w; move the file away to start without it", err)
	}
	return err
}

// Close closes the store's files. Everything saved before is already on
// disk. Later calls of any method return ErrClosed. The idempotent-Close
// shape is the usual one (evidence.FileChain's too); the files differ.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.anomJ.Close(), s.scoreJ.Close())
}

// SaveStates stores states: each replaces the stored state with the same
// (Kind, Key) when its UpdatedMs is greater or equal (so on equal UpdatedMs
// the later one wins), as in ClickHouse. Blobs are copied. An empty states
// writes nothing.
func (s *FileStore) SaveStates(_ context.Context, states []State) error {
	own := make([]State, len(states))
	for i, st := range states {
		st.Blob = bytes.Clone(st.Blob)
		if st.Blob == nil {
			st.Blob = []byte{}
		}
		own[i] = st
	}
	return saveNewest(s, &s.states, own, func(st State) (stateKey, int64) {
		return stateKey{st.Kind, st.Key}, st.UpdatedMs
	}, s.writeStates)
}

// SaveCheckpoints stores cps with the same newest-wins rule per (Group,
// Topic, Partition). An empty cps writes nothing.
func (s *FileStore) SaveCheckpoints(_ context.Context, cps []Checkpoint) error {
	return saveNewest(s, &s.checkpoints, cps, func(c Checkpoint) (cpKey, int64) {
		return cpKey{c.Group, c.Topic, c.Partition}, c.UpdatedMs
	}, func(next map[cpKey]Checkpoint) error {
		all := slices.SortedFunc(maps.Values(next), func(a, b Checkpoint) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		return s.writeJSON(checkpointsFile, all)
	})
}

// saveNewest is the Save of states and checkpoints: under s.mu, each of vs
// replaces the value of *cur with its key when its version (UpdatedMs) is
// greater or equal, so on a tie the later one wins. write persists the
// merged map, which becomes *cur only if that worked. An empty vs writes
// nothing.
func saveNewest[K comparable, V any](s *FileStore, cur *map[K]V, vs []V, version func(V) (K, int64), write func(map[K]V) error) error {
	if len(vs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	next := make(map[K]V, len(*cur)+len(vs))
	maps.Copy(next, *cur)
	for _, v := range vs {
		k, ms := version(v)
		if old, ok := next[k]; ok {
			if _, oldMs := version(old); ms < oldMs {
				continue
			}
		}
		next[k] = v
	}
	if err := write(next); err != nil {
		return err
	}
	*cur = next
	return nil
}

// LoadPartitions returns, for group and topic, the newest checkpoint of each
// of partitions (absent ones are not in the map) and every state whose
// newest version was saved for topic and one of partitions, ordered by
// (Kind, Key). Blobs are copies the caller may keep.
func (s *FileStore) LoadPartitions(_ context.Context, group, topic string, partitions []int32) (map[int32]Checkpoint, []State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	cps := make(map[int32]Checkpoint, len(partitions))
	var states []State
	for _, p := range partitions {
		if c, ok := s.checkpoints[cpKey{group, topic, p}]; ok {
			cps[p] = c
		}
	}
	want := make(map[int32]bool, len(partitions))
	for _, p := range partitions {
		want[p] = true
	}
	for _, st := range s.states {
		if st.Topic == topic && want[st.Partition] {
			st.Blob = bytes.Clone(st.Blob)
			states = append(states, st)
		}
	}
	slices.SortFunc(states, func(a, b State) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key)) })
	return cps, states, nil
}

// LoadState returns the newest state of (kind, key), ok false if none.
func (s *FileStore) LoadState(_ context.Context, kind, key string) (State, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return State{}, false, ErrClosed
	}
	st, ok := s.states[stateKey{kind, key}]
	st.Blob = bytes.Clone(st.Blob)
	return st, ok, nil
}

// InsertAnomalies appends the anomalies whose ID is not stored yet; a
// repeated ID keeps the first record (ClickHouse keeps the last; the two
// differ only in what a re-detection changes, such as DetectedMs). Records
// are stored as JSON, so invalid UTF-8 reads back as U+FFFD. A record that
// cannot be encoded (NaN or infinite floats) fails the call before anything
// is written.
func (s *FileStore) InsertAnomalies(_ context.Context, as []anomaly.Anomaly) error {
	if len(as) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var recs [][]byte
	added := map[string]anomalyRef{}
	for i := range as {
		a := &as[i]
		if _, ok := s.anomalies[a.ID]; ok {
			continue
		}
		if _, ok := added[a.ID]; ok {
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("store anomaly %s of agent %q: %w", a.ID, a.AgentID, err)
		}
		recs = append(recs, b)
		added[a.ID] = anomalyRef{a.Partition, a.WindowStartMs}
	}
	if err := s.anomJ.Append(recs...); err != nil {
		return fmt.Errorf("store anomalies: %w", err)
	}
	for id, ref := range added {
		s.anomalies[id] = ref
	}
	return nil
}

// InsertScores appends ss. A later score of the same (AgentID,
// WindowStartMs) replaces an earlier one in Scores. Non-finite floats are
// kept (as strings in the file).
func (s *FileStore) InsertScores(_ context.Context, ss []anomaly.Score) error {
	if len(ss) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	recs := make([][]byte, len(ss))
	for i := range ss {
		b, err := json.Marshal(toFileScore(&ss[i]))
		if err != nil {
			return fmt.Errorf("store score of agent %q window %d: %w", ss[i].AgentID, ss[i].WindowStartMs, err)
		}
		recs[i] = b
	}
	if err := s.scoreJ.Append(recs...); err != nil {
		return fmt.Errorf("store scores: %w", err)
	}
	return nil
}

// AnomalyIDs returns the ids of stored anomalies on partitions with
// WindowStartMs >= fromMs.
func (s *FileStore) AnomalyIDs(_ context.Context, partitions []int32, fromMs int64) (map[string]struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	ids := map[string]struct{}{}
	for id, ref := range s.anomalies {
		if ref.windowStartMs >= fromMs && slices.Contains(partitions, ref.partition) {
			ids[id] = struct{}{}
		}
	}
	return ids, nil
}

// Anomalies returns the anomalies of agentID ("" for all) with fromMs <=
// WindowStartMs < toMs, once per ID, ordered by (WindowStartMs, AgentID,
// Kind, ID). It reads the whole file. Scores reads its file the same way
// but keeps the last record per window, not the first per ID, so the two
// stay separate.
func (s *FileStore) Anomalies(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Anomaly, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []anomaly.Anomaly
	seen := map[string]bool{}
	err := s.anomJ.Records(ctx, func(line []byte) error {
		var a anomaly.Anomaly
		if err := json.Unmarshal(line, &a); err != nil {
			return err
		}
		if seen[a.ID] || a.WindowStartMs < fromMs || a.WindowStartMs >= toMs || (agentID != "" && a.AgentID != agentID) {
			return nil
		}
		seen[a.ID] = true
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, damaged(err)
	}
	slices.SortStableFunc(out, func(a, b anomaly.Anomaly) int {
		return cmp.Or(cmp.Compare(a.WindowStartMs, b.WindowStartMs), cmp.Compare(a.AgentID, b.AgentID), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Scores returns the scores of agentID ("" for all) with fromMs <=
// WindowStartMs < toMs, the last stored per window, ordered by
// (WindowStartMs, AgentID). nil float slices read back as empty ones, as
// from ClickHouse. It reads the whole file (as Anomalies does, with a
// different rule for duplicates).
func (s *FileStore) Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return scanScores(func(fn func([]byte) error) error { return s.scoreJ.Records(ctx, fn) }, agentID, fromMs, toMs)
}

// scanScores reads the score lines that records gives, as Scores
// describes.
func scanScores(records func(fn func(line []byte) error) error, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	type win struct {
		agent string
		start int64
	}
	// A line of another agent cannot hold agentID's field as
	// InsertScores encodes it (the same encoder, and a quote inside a
	// JSON string is always escaped), so it is skipped without decoding:
	// the responder reads one agent's scores per evidence bundle, and
	// decoding every agent's line made that take seconds (a 70 MB file
	// after the demo) with the store locked.
	var field []byte
	if agentID != "" {
		enc, err := json.Marshal(agentID)
		if err != nil {
			return nil, err
		}
		field = append([]byte(`"agent_id":`), enc...)
	}
	idx := map[win]int{}
	var out []anomaly.Score
	err := records(func(line []byte) error {
		if field != nil && !bytes.Contains(line, field) {
			return nil
		}
		var fs fileScore
		if err := json.Unmarshal(line, &fs); err != nil {
			return err
		}
		if fs.WindowStartMs < fromMs || fs.WindowStartMs >= toMs || (agentID != "" && fs.AgentID != agentID) {
			return nil
		}
		c := fs.score()
		w := win{c.AgentID, c.WindowStartMs}
		if i, ok := idx[w]; ok {
			out[i] = c
			return nil
		}
		idx[w] = len(out)
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, damaged(err)
	}
	slices.SortFunc(out, func(a, b anomaly.Score) int {
		return cmp.Or(cmp.Compare(a.WindowStartMs, b.WindowStartMs), cmp.Compare(a.AgentID, b.AgentID))
	})
	return out, nil
}

// BackfillProgress returns how far job got, ok false if it never recorded
// progress.
func (s *FileStore) BackfillProgress(_ context.Context, job string) (doneThroughMs int64, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, ErrClosed
	}
	doneThroughMs, ok = s.backfill[job]
	return doneThroughMs, ok, nil
}

// SetBackfillProgress records that job has folded in every event before
// doneThroughMs; the latest call wins.
func (s *FileStore) SetBackfillProgress(_ context.Context, job string, doneThroughMs int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	next := make(map[string]int64, len(s.backfill)+1)
	maps.Copy(next, s.backfill)
	next[job] = doneThroughMs
	if err := s.writeJSON(backfillFile, next); err != nil {
		return err
	}
	s.backfill = next
	return nil
}

// writeFile replaces the named file atomically with data (mode 0600).
func (s *FileStore) writeFile(name string, data []byte) error {
	if err := atomicfile.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
		return fmt.Errorf("save %s: %w", name, err)
	}
	return nil
}

func (s *FileStore) writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return s.writeFile(name, append(b, '\n'))
}

// readJSON decodes path into v; a missing file leaves v as it is.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w; move the file away to start without it", path, err)
	}
	return nil
}

// writeStates writes states.bin: the magic, then per state its topic,
// partition, kind, key, updated_ms and blob (strings and the blob as
// uvarint length + bytes, integers as varints), then a CRC-32 of all that.
// Binary, so keys and blobs keep every byte.
func (s *FileStore) writeStates(states map[stateKey]State) error {
	keys := make([]stateKey, 0, len(states))
	size := len(statesMagic) + 4
	for k, st := range states {
		keys = append(keys, k)
		size += len(st.Topic) + len(st.Kind) + len(st.Key) + len(st.Blob) + 6*binary.MaxVarintLen64
	}
	slices.SortFunc(keys, func(a, b stateKey) int { return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.key, b.key)) })
	buf := make([]byte, 0, size)
	buf = append(buf, statesMagic...)
	for _, k := range keys {
		st := states[k]
		buf = appendString(buf, st.Topic)
		buf = binary.AppendVarint(buf, int64(st.Partition))
		buf = appendString(buf, st.Kind)
		buf = appendString(buf, st.Key)
		buf = binary.AppendVarint(buf, st.UpdatedMs)
		buf = appendString(buf, string(st.Blob))
	}
	buf = binary.BigEndian.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	return s.writeFile(statesFile, buf)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func (s *FileStore) loadStates() error {
	path := filepath.Join(s.dir, statesFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	bad := func(what string) error {
		return fmt.Errorf("%s is corrupt (%s); move it away to start with empty baselines", path, what)
	}
	if len(b) < len(statesMagic)+4 || string(b[:len(statesMagic)]) != statesMagic {
		return bad("no header")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return bad("checksum mismatch")
	}
	d := decoder{b: body[len(statesMagic):]}
	for len(d.b) > 0 && d.err == nil {
		var st State
		st.Topic = d.str()
		st.Partition = int32(d.varint(math.MinInt32, math.MaxInt32))
		st.Kind = d.str()
		st.Key = d.str()
		st.UpdatedMs = d.varint(math.MinInt64, math.MaxInt64)
		st.Blob = []byte(d.str())
		if d.err == nil {
			s.states[stateKey{st.Kind, st.Key}] = st
		}
	}
	if d.err != nil {
		return bad(d.err.Error())
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint(lo, hi int64) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || v < lo || v > hi {
		d.err = errors.New("bad integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || l > uint64(len(d.b)-n) {
		d.err = errors.New("bad length")
		return ""
	}
	s := string(d.b[n : n+int(l)])
	d.b = d.b[n+int(l):]
	return s
}

// fileScore is anomaly.Score as stored in scores.jsonl: floats that JSON
// cannot carry (±Inf, NaN) are written as strings. It repeats Score's
// fields on purpose, since only the float types differ.
type fileScore struct {
	AgentID       string   `json:"agent_id"`
	WindowStartMs int64    `json:"window_start_ms"`
	WindowEndMs   int64    `json:"window_end_ms"`
	Partition     int32    `json:"partition"`
	Score         jfloat   `json:"score"`
	Severity      string   `json:"severity"`
	Values        []jfloat `json:"values"`
	Expected      []jfloat `json:"expected"`
	Surprise      []jfloat `json:"surprise"`
	Trained       bool     `json:"trained"`
	PeerBaseline  bool     `json:"peer_baseline"`
	Late          int      `json:"late"`
}

func toFileScore(c *anomaly.Score) fileScore {
	conv := func(fs []float64) []jfloat {
		out := make([]jfloat, len(fs))
		for i, f := range fs {
			out[i] = jfloat(f)
		}
		return out
	}
	return fileScore{
		AgentID: c.AgentID, WindowStartMs: c.WindowStartMs, WindowEndMs: c.WindowEndMs, Partition: c.Partition,
		Score: jfloat(c.Score), Severity: c.Severity, Values: conv(c.Values), Expected: conv(c.Expected),
		Surprise: conv(c.Surprise), Trained: c.Trained, PeerBaseline: c.PeerBaseline, Late: c.Late,
	}
}

func (fs *fileScore) score() anomaly.Score {
	conv := func(js []jfloat) []float64 {
		out := make([]float64, len(js))
		for i, f := range js {
			out[i] = float64(f)
		}
		return out
	}
	return anomaly.Score{
		AgentID: fs.AgentID, WindowStartMs: fs.WindowStartMs, WindowEndMs: fs.WindowEndMs, Partition: fs.Partition,
		Score: float64(fs.Score), Severity: fs.Severity, Values: conv(fs.Values), Expected: conv(fs.Expected),
		Surprise: conv(fs.Surprise), Trained: fs.Trained, PeerBaseline: fs.PeerBaseline, Late: fs.Late,
	}
}

// jfloat is a float64 whose JSON form is a number when finite and the
// string "+Inf", "-Inf" or "NaN" otherwise. Finite values round-trip
// exactly, -0 included.
type jfloat float64

// MarshalJSON implements json.Marshaler.
func (f jfloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *jfloat) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
		if s != "NaN" && s != "+Inf" && s != "-Inf" {
			return fmt.Errorf("float %q: want a number, \"NaN\", \"+Inf\" or \"-Inf\"", s)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("float %s: %w", b, err)
	}
	*f = jfloat(v)
	return nil
}

// LoadPartitionsCapped is LoadPartitions holding at most maxAgents agent
// states, the most recently saved ones (ties by key); every other agent
// of topic and partitions is passed by key to rest. maxAgents < 0 loads
// every agent. rest is called from the calling goroutine, without the
// store's lock.
func (s *FileStore) LoadPartitionsCapped(ctx context.Context, group, topic string, partitions []int32, maxAgents int, rest func(key string)) (map[int32]Checkpoint, []State, error) {
	cps, states, err := s.LoadPartitions(ctx, group, topic, partitions)
	if err != nil || maxAgents < 0 {
		return cps, states, err
	}
	var agents []State
	kept := states[:0]
	for _, st := range states {
		if st.Kind == KindAgent {
			agents = append(agents, st)
		} else {
			kept = append(kept, st)
		}
	}
	slices.SortFunc(agents, func(a, b State) int { return cmp.Or(cmp.Compare(b.UpdatedMs, a.UpdatedMs), cmp.Compare(a.Key, b.Key)) })
	n := min(maxAgents, len(agents))
	for _, st := range agents[n:] {
		rest(st.Key)
	}
	return cps, append(kept, agents[:n]...), nil
}

// ExpireAgents deletes the agent states of topic and partitions saved
// before beforeMs for which drop(key) says yes, and rewrites the states
// file; it returns how many it deleted. The file store has no tombstones:
// the rewrite is the removal. drop is called with the store's lock held,
// so it must not call the store.
func (s *FileStore) ExpireAgents(_ context.Context, topic string, partitions []int32, beforeMs, _ int64, drop func(key string) bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	want := make(map[int32]bool, len(partitions))
	for _, p := range partitions {
		want[p] = true
	}
	// Candidates in key order, so drop sees them in the same order every run.
	var cands []stateKey
	for k, st := range s.states {
		if k.kind == KindAgent && st.Topic == topic && want[st.Partition] && st.UpdatedMs < beforeMs {
			cands = append(cands, k)
		}
	}
	slices.SortFunc(cands, func(a, b stateKey) int { return cmp.Compare(a.key, b.key) })
	next := maps.Clone(s.states)
	n := 0
	for _, k := range cands {
		if drop(k.key) {
			delete(next, k)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.writeStates(next); err != nil {
		return 0, fmt.Errorf("remove %d idle agents: %w", n, err)
	}
	s.states = next
	return n, nil
}
