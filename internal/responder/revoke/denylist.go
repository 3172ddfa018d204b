package revoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/platform/flock"
)

// Deny-list file formats.
const (
	// DenylistLines: one credential id per line; blank lines and lines
	// starting with # are kept as they are and are not entries.
	DenylistLines = "lines"
	// DenylistJSON: a JSON array of DenyEntry objects.
	DenylistJSON = "json"
)

// DenyEntry is one entry of a JSON deny-list: the gateway's file format,
// so it is its own type, though its fields resemble audit.Record's.
type DenyEntry struct {
	CredentialID string    `json:"credential_id"`
	AgentID      string    `json:"agent_id,omitempty"`
	IncidentID   string    `json:"incident_id,omitempty"`
	RevokedAt    time.Time `json:"revoked_at"`
}

// DenylistOptions configure NewDenylist.
type DenylistOptions struct {
	// Path is the file the gateway loads. Its directory must be writable:
	// every change writes a temporary file there and renames it over Path.
	Path string
	// Format is lines (the default) or json.
	Format string
	// Perm is the mode of a new file; default 0644 (the gateway reads
	// it). An existing file keeps its mode.
	Perm fs.FileMode
	// Name is the adapter name; default "denylist".
	Name string
	// Now is the clock for RevokedAt; default time.Now.
	Now func() time.Time
}

// Denylist revokes by adding the credential id to a file the gateway
// loads, and restores by removing it. Every change replaces the file
// atomically (temporary file, fsync, rename), so the gateway never reads
// half a file. Adding an id that is there, or removing one that is not,
// changes nothing. Safe for concurrent use, and across processes on
// systems with flock (a lock file Path+".lock" serialises writers).
//
// The file is not a journal.Journal, on purpose: it is the gateway's
// input, not our log. A journal's file is append-only records that only
// its own replay reads, owned by one process (or locked per append), with
// mode 0600 and blank lines dropped on compaction; this file is read by
// gateways that need the whole current list at every moment (so each
// change is a full atomic replace, never an append), its lines format keeps
// operators' comments and blank lines where they are, its json format is
// one indented array (not one record per line), it keeps the mode the
// operator gave it (0644 by default), and nothing holds it open between
// changes. What it shares with the journal, the atomic replace and the
// lock, it already takes from atomicfile and flock.
type Denylist struct {
	o  DenylistOptions
	mu sync.Mutex
}

var _ Gateway = (*Denylist)(nil)

// NewDenylist checks o and returns the adapter. The file need not exist.
func NewDenylist(o DenylistOptions) (*Denylist, error) {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New("path: empty"))
	}
	if o.Format == "" {
		o.Format = DenylistLines
	}
	if o.Format != DenylistLines && o.Format != DenylistJSON {
		errs = append(errs, fmt.Errorf("format: %q; want lines or json", o.Format))
	}
	if o.Perm == 0 {
		o.Perm = 0o644
	}
	if o.Name == "" {
		o.Name = "denylist"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("denylist adapter: %w", err)
	}
	return &Denylist{o: o}, nil
}

// Name implements Gateway.
func (d *Denylist) Name() string { return d.o.Name }

// Check implements Gateway: a line can only hold an id without control
// characters, outer spaces or a leading #.
func (d *Denylist) Check(t Target) error {
	if d.o.Format != DenylistLines {
		return nil
	}
	id := t.CredentialID
	if strings.TrimSpace(id) != id || strings.HasPrefix(id, "#") || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("denylist %s: credential id %q cannot be one line of the file; use format json", d.o.Name, id)
	}
	return nil
}

// Revoke implements Gateway.
func (d *Denylist) Revoke(_ context.Context, t Target, keep func([]byte) error) (Result, error) {
	if err := d.Check(t); err != nil {
		return Result{}, err
	}
	changed, err := d.update(func(lines []string, entries []DenyEntry) ([]string, []DenyEntry, bool) {
		if d.o.Format == DenylistLines {
			if slices.Contains(lines, t.CredentialID) {
				return lines, entries, false
			}
			return append(lines, t.CredentialID), entries, true
		}
		if slices.ContainsFunc(entries, func(e DenyEntry) bool { return e.CredentialID == t.CredentialID }) {
			return lines, entries, false
		}
		return lines, append(entries, DenyEntry{CredentialID: t.CredentialID, AgentID: t.AgentID, IncidentID: t.IncidentID, RevokedAt: d.o.Now().UTC()}), true
	}, func() error { return keep(changeMarker) })
	if err != nil {
		return Result{}, err
	}
	if !changed {
		return Result{Status: StatusAlreadyRevoked, Detail: "credential is on the deny-list"}, nil
	}
	return Result{Status: StatusRevoked, Detail: "credential added to the deny-list", Attempts: 1}, nil
}

// Restore implements Gateway.
func (d *Denylist) Restore(_ context.Context, t Target, _ []byte) (Result, error) {
	changed, err := d.update(func(lines []string, entries []DenyEntry) ([]string, []DenyEntry, bool) {
		n, m := len(lines), len(entries)
		lines = slices.DeleteFunc(lines, func(l string) bool { return l == t.CredentialID })
		entries = slices.DeleteFunc(entries, func(e DenyEntry) bool { return e.CredentialID == t.CredentialID })
		return lines, entries, len(lines) != n || len(entries) != m
	}, nil)
	if err != nil {
		return Result{}, err
	}
	if !changed {
		return Result{Status: StatusAlreadyRestored, Detail: "credential is not on the deny-list"}, nil
	}
	return Result{Status: StatusRestored, Detail: "credential removed from the deny-list", Attempts: 1}, nil
}

// Contains reports whether id is on the deny-list.
func (d *Denylist) Contains(id string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lines, entries, _, err := d.read()
	if err != nil {
		return false, err
	}
	return slices.Contains(lines, id) || slices.ContainsFunc(entries, func(e DenyEntry) bool { return e.CredentialID == id }), nil
}

// update applies fn to the file's contents under both locks and, if fn
// changed them, calls before (if set) and writes the file. In lines
// format fn sees every line (comments too) and entries is nil; in json
// format lines is nil.
func (d *Denylist) update(fn func([]string, []DenyEntry) ([]string, []DenyEntry, bool), before func() error) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := flock.Lock(d.o.Path+".lock", true, true)
	if err != nil {
		return false, fmt.Errorf("denylist %s: %w", d.o.Name, err)
	}
	defer unlock()
	lines, entries, perm, err := d.read()
	if err != nil {
		return false, err
	}
	lines, entries, changed := fn(lines, entries)
	if !changed {
		return false, nil
	}
	if before != nil {
		if err := before(); err != nil {
			return false, fmt.Errorf("denylist %s: %w", d.o.Name, err)
		}
	}
	var data []byte
	if d.o.Format == DenylistLines {
		if len(lines) > 0 {
			data = []byte(strings.Join(lines, "\n") + "\n")
		}
	} else {
		if entries == nil {
			entries = []DenyEntry{}
		}
		if data, err = json.MarshalIndent(entries, "", "  "); err != nil {
			return false, fmt.Errorf("encode deny-list: %w", err)
		}
		data = append(data, '\n')
	}
	if err := atomicfile.WriteFile(d.o.Path, data, perm); err != nil {
		return false, fmt.Errorf("denylist %s: %w; check that its directory is writable", d.o.Name, err)
	}
	return true, nil
}

func (d *Denylist) read() (lines []string, entries []DenyEntry, perm fs.FileMode, err error) {
	perm = d.o.Perm
	data, err := os.ReadFile(d.o.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, perm, nil
	case err != nil:
		return nil, nil, perm, fmt.Errorf("read deny-list: %w", err)
	}
	if fi, err := os.Stat(d.o.Path); err == nil {
		perm = fi.Mode().Perm()
	}
	if d.o.Format == DenylistLines {
		data = bytes.TrimSuffix(data, []byte("\n"))
		if len(data) == 0 {
			return nil, nil, perm, nil
		}
		for l := range strings.SplitSeq(string(data), "\n") {
			lines = append(lines, strings.TrimSuffix(l, "\r"))
		}
		return lines, nil, perm, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, perm, nil
	}
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, nil, perm, fmt.Errorf("read deny-list %s: not a JSON array of entries: %w; fix or remove the file", d.o.Path, err)
	}
	return nil, entries, perm, nil
}

// IDs returns the credential ids on the list, in file order: the lines
// that are not blank or comments, or the JSON entries' ids.
func (d *Denylist) IDs() ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	lines, entries, _, err := d.read()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, l)
		}
	}
	for _, e := range entries {
		out = append(out, e.CredentialID)
	}
	return out, nil
}

// Sync adds the entries of add that are missing and removes the ids of
// remove, in one atomic replace of the file, and reports whether it
// changed. The distributed mode calls it with what the shared ledger says
// (revocations made by any instance, restores made anywhere), so every
// instance's file converges to the same list; lines it does not name
// (operators' own entries, comments) stay.
func (d *Denylist) Sync(add []DenyEntry, remove []string) (bool, error) {
	return d.update(func(lines []string, entries []DenyEntry) ([]string, []DenyEntry, bool) {
		changed := false
		for _, id := range remove {
			n, m := len(lines), len(entries)
			lines = slices.DeleteFunc(lines, func(l string) bool { return l == id })
			entries = slices.DeleteFunc(entries, func(e DenyEntry) bool { return e.CredentialID == id })
			changed = changed || len(lines) != n || len(entries) != m
		}
		for _, e := range add {
			if d.Check(Target{CredentialID: e.CredentialID}) != nil {
				continue // cannot be a line; the adapter refused to revoke it too
			}
			if d.o.Format == DenylistLines {
				if !slices.Contains(lines, e.CredentialID) {
					lines, changed = append(lines, e.CredentialID), true
				}
			} else if !slices.ContainsFunc(entries, func(x DenyEntry) bool { return x.CredentialID == e.CredentialID }) {
				entries, changed = append(entries, e), true
			}
		}
		return lines, entries, changed
	}, nil)
}
