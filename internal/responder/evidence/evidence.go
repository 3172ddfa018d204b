// Package evidence writes and verifies timeline snapshots: evidence bundles
// that a responder takes when it acts on an anomaly. A bundle is one
// directory under a root, named by its id, holding the agent's events in a
// window around the anomaly (events.jsonl, events.csv), the anomaly
// (anomaly.json), the detector's window scores with the baseline's
// expectations (scores.csv), a human summary (summary.txt), a plot of the
// top features against the baseline's expectation (plot.png) and manifest.json,
// which lists every other file with its SHA-256 and size and names the
// previous bundle's manifest hash. The manifest's own SHA-256 is the
// bundle's hash and is recorded in a ChainStore, so the bundles form a hash
// chain: changing, removing or replacing any of them is found by Verify and
// VerifyChain.
//
// The chain also holds the periodic reports (RecordReport): bundles of
// kind "report" whose files are the report's editions, so a report changed
// after it was written is found the same way.
//
// Bundles are written into a temporary directory and renamed into place,
// then made read-only; nothing here ever changes a bundle once written.
package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// ManifestVersion is the manifest format version written in Manifest.V.
const ManifestVersion = 1

// Names of the files of a bundle.
const (
	EventsJSONL  = "events.jsonl"
	EventsCSV    = "events.csv"
	AnomalyJSON  = "anomaly.json"
	ScoresCSV    = "scores.csv"
	SummaryTXT   = "summary.txt"
	PlotPNG      = "plot.png"
	ManifestJSON = "manifest.json"
)

// DefaultMaxEvents is the cap on events in one bundle when Request.MaxEvents
// is zero.
const DefaultMaxEvents = 100_000

// Default evidence window, the same as pkg/playbooks' snapshot step.
const (
	DefaultBefore = 15 * time.Minute
	DefaultAfter  = 5 * time.Minute
)

// maxManifestBytes bounds what Open and Verify read as a manifest.
const maxManifestBytes = 1 << 20

// snapshotAttempts bounds how often Snapshot re-reads the chain head after
// another writer appended first.
const snapshotAttempts = 16

// ErrExists means a bundle with the requested id is already in the root.
// Snapshots are never rewritten: call Resume to get the existing bundle.
var ErrExists = errors.New("evidence bundle already exists")

// ErrUnrecorded means the bundle was written but it is unknown whether its
// record reached the chain (the store failed or timed out). The bundle is
// complete; call Resume, which records it if it is missing.
var ErrUnrecorded = errors.New("evidence bundle written but maybe not recorded in the chain")

// EventSource reads an agent's stored events: ClickHouse in production, the
// embedded store in the demo, MemSource in tests.
type EventSource interface {
	// Events calls fn for each event of agentID with fromMs <= EventTimeMs
	// < toMs, in event-time order. The event and its strings are valid
	// only during the call: fn copies what it keeps. When fn returns an
	// error Events stops and returns that error unchanged.
	Events(ctx context.Context, agentID string, fromMs, toMs int64, fn func(*event.Event) error) error
}

// Request says what to snapshot.
type Request struct {
	// ID names the bundle's directory under the root; see ValidID. The
	// caller derives it from the incident (BundleID) so that handling the
	// same incident twice finds the existing bundle.
	ID string
	// IncidentID is the responder's incident, recorded in the manifest.
	IncidentID string
	// Anomaly is the anomaly the snapshot is evidence of; its AgentID and
	// window choose the events.
	Anomaly anomaly.Anomaly
	// Scores are the agent's window scores around the anomaly, each with
	// the baseline's expected values at that time, in any order. They may
	// be empty (rule anomalies of a new agent).
	Scores []anomaly.Score
	// Before and After widen the anomaly's window: events from
	// WindowStartMs-Before to WindowEndMs+After are taken. Zero means no
	// widening; DefaultBefore and DefaultAfter are the usual values.
	Before, After time.Duration
	// MaxEvents caps the events written; zero means DefaultMaxEvents. The
	// earliest events are kept and the bundle says it was truncated.
	MaxEvents int
}

// File is one file of a bundle as its manifest lists it.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest is the content of a bundle's manifest.json.
type Manifest struct {
	V        int    `json:"v"`
	BundleID string `json:"bundle_id"`
	// Kind is "" for a snapshot of an incident, KindReport for a periodic
	// report (then Period names it and the agent, anomaly and incident
	// are empty).
	Kind       string `json:"kind,omitempty"`
	Period     string `json:"period,omitempty"`
	Seq        int64  `json:"seq"`
	AgentID    string `json:"agent_id"`
	AnomalyID  string `json:"anomaly_id"`
	IncidentID string `json:"incident_id"`
	CreatedMs  int64  `json:"created_ms"`
	// FromMs and ToMs are the evidence window: events with FromMs <=
	// event time < ToMs.
	FromMs int64 `json:"from_ms"`
	ToMs   int64 `json:"to_ms"`
	// Events is how many events the bundle holds; Truncated says the
	// window had more than MaxEvents, of which the earliest were kept.
	Events    int64 `json:"events"`
	MaxEvents int64 `json:"max_events"`
	Truncated bool  `json:"truncated"`
	// Files lists every file of the bundle except manifest.json.
	Files []File `json:"files"`
	// PrevManifestSHA256 is the previous bundle's manifest hash, ZeroHash
	// for the first bundle of the chain.
	PrevManifestSHA256 string `json:"prev_manifest_sha256"`
}

var fileName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ParseManifest decodes manifest.json: exactly the fields of Manifest,
// version ManifestVersion, a valid bundle id, seq at least 1, hashes of 64
// lowercase hex digits, and at least one file, each with a plain unique
// name other than manifest.json and a non-negative size.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := decodeStrict(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w", err)
	}
	var errs []error
	if m.V != ManifestVersion {
		errs = append(errs, fmt.Errorf("v: this build reads version %d, got %d", ManifestVersion, m.V))
	}
	if err := ValidID(m.BundleID); err != nil {
		errs = append(errs, fmt.Errorf("bundle_id: %w", err))
	}
	if m.Seq < 1 {
		errs = append(errs, fmt.Errorf("seq: must be at least 1, got %d", m.Seq))
	}
	if m.Kind != "" && m.Kind != KindReport {
		errs = append(errs, fmt.Errorf("kind: want %q or none, got %q", KindReport, clip(m.Kind, 40)))
	}
	if !isHash(m.PrevManifestSHA256) {
		errs = append(errs, fmt.Errorf("prev_manifest_sha256: want 64 lowercase hex digits, got %q", clip(m.PrevManifestSHA256, 80)))
	}
	if m.Events < 0 || m.MaxEvents < 0 {
		errs = append(errs, errors.New("events, max_events: must not be negative"))
	}
	if len(m.Files) == 0 {
		errs = append(errs, errors.New("files: empty"))
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		switch {
		case !fileName.MatchString(f.Name) || f.Name == ManifestJSON:
			errs = append(errs, fmt.Errorf("files[%d].name: %q is not a plain file name", i, clip(f.Name, 80)))
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("files[%d].name: %s listed twice", i, f.Name))
		}
		seen[f.Name] = true
		if !isHash(f.SHA256) {
			errs = append(errs, fmt.Errorf("files[%d].sha256: want 64 lowercase hex digits, got %q", i, clip(f.SHA256, 80)))
		}
		if f.Size < 0 {
			errs = append(errs, fmt.Errorf("files[%d].size: negative", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

// MarshalManifest encodes m as manifest.json is written: indented JSON and
// a final newline.
func MarshalManifest(m Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Bundle is a bundle written by Snapshot or found by Open or Resume.
type Bundle struct {
	// Path is the bundle's directory.
	Path     string
	Manifest Manifest
	// SHA256 is the hash of manifest.json: the bundle's hash, recorded
	// in the chain.
	SHA256 string
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidID reports whether id may name a bundle: 1 to 128 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit (so it
// is one plain path element and never a hidden name).
func ValidID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("bundle id %q: want 1-128 of [A-Za-z0-9._-], starting with a letter or digit", clip(id, 140))
	}
	return nil
}

// BundleID returns the bundle id for an incident: "ev-" and the first 16
// bytes of SHA-256 of incidentID, in hex. The same incident always gets the
// same id, which makes snapshotting it again find the existing bundle.
func BundleID(incidentID string) string {
	sum := sha256.Sum256([]byte(incidentID))
	return "ev-" + hex.EncodeToString(sum[:16])
}

func (req *Request) validate() error {
	var errs []error
	if err := ValidID(req.ID); err != nil {
		errs = append(errs, err)
	}
	a := &req.Anomaly
	if a.AgentID == "" {
		errs = append(errs, errors.New("anomaly has no agent id: a snapshot is one agent's timeline"))
	}
	if a.ID == "" {
		errs = append(errs, errors.New("anomaly has no id"))
	}
	if a.WindowEndMs < a.WindowStartMs {
		errs = append(errs, fmt.Errorf("anomaly window ends (%d) before it starts (%d)", a.WindowEndMs, a.WindowStartMs))
	}
	if req.Before < 0 || req.After < 0 {
		errs = append(errs, fmt.Errorf("before (%s) and after (%s) must not be negative", req.Before, req.After))
	}
	if req.MaxEvents < 0 {
		errs = append(errs, fmt.Errorf("max events must not be negative, got %d", req.MaxEvents))
	}
	return errors.Join(errs...)
}

// Snapshot writes the evidence bundle req asks for under root (created if
// missing) and records it in store. It streams the agent's events from src
// into the bundle, never holding more than one in memory, and stops reading
// after req.MaxEvents. now is the bundle's creation time.
//
// The bundle is written into a hidden temporary directory under root and
// renamed to root/req.ID when complete, so a failure or a crash leaves no
// partial bundle; a crash may leave a ".tmp-*" directory, which is safe to
// delete. A bundle id already in root is an error wrapping ErrExists. If
// the store fails after the bundle is in place the error wraps
// ErrUnrecorded; in both cases Resume returns the bundle.
//
// Concurrent calls with different ids may share a root and a store.
func Snapshot(ctx context.Context, req Request, src EventSource, store ChainStore, root string, now time.Time) (Bundle, error) {
	if err := req.validate(); err != nil {
		return Bundle{}, fmt.Errorf("snapshot: %w", err)
	}
	if req.MaxEvents == 0 {
		req.MaxEvents = DefaultMaxEvents
	}
	final := filepath.Join(root, req.ID)
	if err := os.MkdirAll(root, RootMode); err != nil {
		return Bundle{}, fmt.Errorf("snapshot %s: create evidence root: %w", req.ID, err)
	}
	if _, err := os.Lstat(final); err == nil {
		return Bundle{}, fmt.Errorf("snapshot %s: %w", req.ID, ErrExists)
	}
	tmp, err := os.MkdirTemp(root, ".tmp-"+req.ID+"-")
	if err != nil {
		return Bundle{}, fmt.Errorf("snapshot %s: %w", req.ID, err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.Chmod(tmp, workMode)
			_ = os.RemoveAll(tmp)
		}
	}()

	m, err := writeContent(ctx, &req, src, tmp, now)
	if err != nil {
		return Bundle{}, fmt.Errorf("snapshot %s: %w", req.ID, err)
	}
	b, done, err := link(ctx, store, tmp, final, m)
	published = done
	if err != nil {
		return Bundle{}, fmt.Errorf("snapshot %s: %w", req.ID, err)
	}
	return b, nil
}

// link writes the manifest of the bundle written in tmp for the chain's
// next position, moves the bundle to final and appends its record to store,
// linking again if another writer appended first. published says that the
// bundle is at final (recorded, or perhaps recorded: the error then wraps
// ErrUnrecorded); otherwise tmp is still the caller's to remove.
func link(ctx context.Context, store ChainStore, tmp, final string, m Manifest) (Bundle, bool, error) {
	abs, err := filepath.Abs(final)
	if err != nil {
		abs = final
	}
	for range snapshotAttempts {
		prev, seq, err := store.Head(ctx)
		if err != nil {
			return Bundle{}, false, fmt.Errorf("read the evidence chain head: %w", err)
		}
		m.Seq, m.PrevManifestSHA256 = seq+1, prev
		sum, err := writeManifest(tmp, m)
		if err != nil {
			return Bundle{}, false, err
		}
		if err := publish(tmp, final); err != nil {
			return Bundle{}, false, err
		}
		rec := Record{
			Seq: m.Seq, BundleID: m.BundleID, AgentID: m.AgentID, AnomalyID: m.AnomalyID,
			IncidentID: m.IncidentID, Path: abs, ManifestSHA256: sum, PrevSHA256: prev, CreatedMs: m.CreatedMs,
		}
		err = store.Append(ctx, rec)
		if err == nil {
			return Bundle{Path: final, Manifest: m, SHA256: sum}, true, nil
		}
		if !errors.Is(err, ErrChainMoved) {
			// complete, and perhaps recorded: Resume decides
			return Bundle{}, true, fmt.Errorf("record in the evidence chain: %w (%w)", err, ErrUnrecorded)
		}
		// Another bundle took this place in the chain: take the bundle
		// back out of view and link it to the new head.
		if err := unpublish(final, tmp); err != nil {
			return Bundle{}, true, fmt.Errorf("%w; delete %s by hand", err, final)
		}
	}
	return Bundle{}, false, fmt.Errorf("the evidence chain moved %d times in a row: %w", snapshotAttempts, ErrChainMoved)
}

// writeManifest writes m as tmp/manifest.json, replacing an earlier
// attempt's, and returns its SHA-256.
func writeManifest(tmp string, m Manifest) (string, error) {
	b, err := MarshalManifest(m)
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	path := filepath.Join(tmp, ManifestJSON)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("write manifest: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode|0o200)
	if err != nil {
		return "", fmt.Errorf("write manifest: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, FileMode)
	}
	if err != nil {
		return "", fmt.Errorf("write manifest: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// publish makes tmp read-only and renames it to final. os.Rename would
// replace an empty directory at final, so final is checked first; a
// non-empty one makes the rename fail.
func publish(tmp, final string) error {
	if _, err := os.Lstat(final); err == nil {
		return ErrExists
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, DirMode); err != nil {
		return fmt.Errorf("make bundle read-only: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Chmod(tmp, workMode)
		if _, serr := os.Lstat(final); serr == nil {
			return ErrExists
		}
		return fmt.Errorf("move bundle into place: %w", err)
	}
	return syncDir(filepath.Dir(final))
}

// unpublish moves a bundle that never made it into the chain back to tmp.
func unpublish(final, tmp string) error {
	if err := os.Chmod(final, workMode); err != nil {
		return fmt.Errorf("take back unrecorded bundle: %w", err)
	}
	if err := os.Rename(final, tmp); err != nil {
		return fmt.Errorf("take back unrecorded bundle: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Open reads the bundle id under root: its manifest and the manifest's
// hash. It checks nothing else; Verify does. A missing bundle is an error
// wrapping fs.ErrNotExist.
func Open(root, id string) (Bundle, error) {
	if err := ValidID(id); err != nil {
		return Bundle{}, fmt.Errorf("open bundle: %w", err)
	}
	path := filepath.Join(root, id)
	b, err := readManifest(path)
	if err != nil {
		return Bundle{}, fmt.Errorf("open bundle %s: %w", id, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return Bundle{}, fmt.Errorf("open bundle %s: %w", id, err)
	}
	if m.BundleID != id {
		return Bundle{}, fmt.Errorf("open bundle %s: its manifest names bundle %s", id, m.BundleID)
	}
	sum := sha256.Sum256(b)
	return Bundle{Path: path, Manifest: m, SHA256: hex.EncodeToString(sum[:])}, nil
}

func readManifest(dir string) ([]byte, error) {
	path := filepath.Join(dir, ManifestJSON)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", ManifestJSON, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", ManifestJSON, maxManifestBytes)
	}
	return b, nil
}

// placer is a ChainStore that places records before it stores them
// (SequencedChain): a write whose answer was lost may have placed the
// bundle, which its store then gets only later.
type placer interface {
	placedRecord(id string) (Record, bool)
}

// Resume returns the existing bundle id under root, the caller's way to
// snapshot an incident idempotently: after Snapshot fails with ErrExists
// or ErrUnrecorded, Resume gives the bundle. The bundle's files must
// verify against its manifest. If the chain has no record of it (a crash
// or store failure between writing and recording), Resume appends one,
// provided the bundle was written for the chain's next position; otherwise
// the bundle can never be linked and the error says to move it away and
// snapshot again.
func Resume(ctx context.Context, store ChainStore, root, id string) (Bundle, error) {
	m, sum, err := VerifyFiles(root, id)
	if err != nil {
		return Bundle{}, fmt.Errorf("resume bundle %s: %w", id, err)
	}
	b := Bundle{Path: filepath.Join(root, id), Manifest: m, SHA256: sum}
	recs, err := findRecords(ctx, store, id)
	if err != nil {
		return Bundle{}, fmt.Errorf("resume bundle %s: %w", id, err)
	}
	if p, ok := store.(placer); ok && len(recs) == 0 {
		if r, ok := p.placedRecord(id); ok {
			recs = []Record{r}
		}
	}
	for _, r := range recs {
		if r.ManifestSHA256 == sum {
			return b, nil
		}
	}
	if len(recs) > 0 {
		return Bundle{}, fmt.Errorf("resume bundle %s: the chain records manifest %s at seq %d, but manifest.json hashes to %s: the bundle was changed; run verify",
			id, recs[0].ManifestSHA256, recs[0].Seq, sum)
	}
	head, seq, err := store.Head(ctx)
	if err != nil {
		return Bundle{}, fmt.Errorf("resume bundle %s: read the evidence chain head: %w", id, err)
	}
	if m.Seq != seq+1 || m.PrevManifestSHA256 != head {
		return Bundle{}, fmt.Errorf("resume bundle %s: it was written for chain seq %d after %s, but the chain is at seq %d %s, so it can never be linked; move %s out of the evidence root and snapshot again",
			id, m.Seq, m.PrevManifestSHA256, seq, head, b.Path)
	}
	abs, err := filepath.Abs(b.Path)
	if err != nil {
		abs = b.Path
	}
	rec := Record{
		Seq: m.Seq, BundleID: id, AgentID: m.AgentID, AnomalyID: m.AnomalyID, IncidentID: m.IncidentID,
		Path: abs, ManifestSHA256: sum, PrevSHA256: head, CreatedMs: m.CreatedMs,
	}
	if err := store.Append(ctx, rec); err != nil {
		return Bundle{}, fmt.Errorf("resume bundle %s: record in the evidence chain: %w", id, err)
	}
	return b, nil
}

func isHash(s string) bool { return len(s) == 64 && isLowerHex(s) }

// clip shortens s for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
