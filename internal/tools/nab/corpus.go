package nab

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayout is how NAB writes a data row's timestamp. time.Parse also takes
// the label file's "2014-04-10 07:15:00.000000" with it, because Go accepts a
// fractional second after the seconds field even when the layout has none.
const timeLayout = "2006-01-02 15:04:05"

// Series is one NAB data file with its labelled anomaly windows. Rows keep
// the file's order: a few NAB files repeat or step back in time
// (realKnownCause/machine_temperature_system_failure.csv), and NAB scores by
// row index, not by time, so neither is "fixed" here.
type Series struct {
	// Name is the file's path under data/, e.g. "realKnownCause/nyc_taxi.csv".
	// It is also the key in labels/combined_windows.json.
	Name   string
	Times  []time.Time
	Values []float64
	// Windows are the labelled anomaly windows, [start, end] inclusive, in
	// file order. Each bound is the timestamp of a row of this series.
	Windows [][2]time.Time
}

// Profile is one NAB application profile: how much a true positive earns
// and what a false negative and a false positive cost. TN is carried over
// from profiles.json for completeness; NAB never uses it.
type Profile struct {
	TP, FN, FP, TN float64
}

// Corpus is a loaded NAB corpus: the series sorted by name and the
// application profiles by name ("standard", "reward_low_FP_rate",
// "reward_low_FN_rate"). It is read-only after Load, so it is safe for
// concurrent use by readers.
type Corpus struct {
	Series   []Series
	Profiles map[string]Profile
}

// Lookup returns the series called name ("category/file.csv").
func (c *Corpus) Lookup(name string) (Series, bool) {
	// A linear scan: 58 series, and a Corpus built by hand need not be sorted.
	for _, s := range c.Series {
		if s.Name == name {
			return s, true
		}
	}
	return Series{}, false
}

// Load reads a NAB checkout laid out as NAB ships it: data/<category>/<file>.csv,
// labels/combined_windows.json and config/profiles.json. The series are the
// files named in the label file, as NAB's runner does; files under data/
// that have no labels are ignored. If only is given, just those series are
// loaded (their names as in the label file). Errors name the file, and for
// a bad row the line.
func Load(dir string, only ...string) (*Corpus, error) {
	labelPath := filepath.Join(dir, "labels", "combined_windows.json")
	labels, err := readLabels(labelPath)
	if err != nil {
		return nil, err
	}
	profilePath := filepath.Join(dir, "config", "profiles.json")
	profiles, err := readProfiles(profilePath)
	if err != nil {
		return nil, err
	}

	names := only
	if len(names) == 0 {
		for name := range labels {
			names = append(names, name)
		}
	}
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)

	c := &Corpus{Profiles: profiles, Series: make([]Series, 0, len(names))}
	for _, name := range names {
		windows, ok := labels[name]
		if !ok {
			return nil, fmt.Errorf("load series %q: not in %s; use a name from that file, like \"realKnownCause/nyc_taxi.csv\"", name, labelPath)
		}
		path := filepath.Join(dir, "data", filepath.FromSlash(name))
		s, err := readSeries(path, name)
		if err != nil {
			return nil, err
		}
		s.Windows = windows
		if _, err := windowRows(s); err != nil {
			return nil, fmt.Errorf("labels for %s in %s: %w", name, labelPath, err)
		}
		c.Series = append(c.Series, s)
	}
	return c, nil
}

func readSeries(path, name string) (Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return Series{}, fmt.Errorf("read series: %w", err)
	}
	defer f.Close()
	s, err := parseSeries(name, bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return Series{}, fmt.Errorf("%s:%w", path, err)
	}
	return s, nil
}

// parseSeries reads a NAB data CSV: the header "timestamp,value", then one
// row per line. Errors start with the line number, "12: ...", so the caller
// can prefix the path and get "path:12: ...".
func parseSeries(name string, r io.Reader) (Series, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return Series{}, fmt.Errorf("1: read header: %w", csvErr(err))
	}
	// NAB data files are written by pandas without a BOM, but a file saved by
	// a spreadsheet may carry one; it is not part of the column name.
	if h0 := strings.TrimPrefix(header[0], "\ufeff"); h0 != "timestamp" || header[1] != "value" {
		return Series{}, fmt.Errorf("1: header is %q, want \"timestamp,value\"", strings.Join(header, ","))
	}
	s := Series{Name: name}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// FieldPos is only valid after a successful Read; a parse error
			// carries its own line.
			line := len(s.Times) + 2
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			return Series{}, fmt.Errorf("%d: %w", line, csvErr(err))
		}
		line, _ := cr.FieldPos(0)
		t, err := parseTime(rec[0])
		if err != nil {
			return Series{}, fmt.Errorf("%d: timestamp %q: want YYYY-MM-DD hh:mm:ss", line, rec[0])
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Series{}, fmt.Errorf("%d: value %q: want a finite number", line, rec[1])
		}
		s.Times = append(s.Times, t)
		s.Values = append(s.Values, v)
	}
	if len(s.Times) == 0 {
		return Series{}, errors.New("2: no rows after the header")
	}
	return s, nil
}

// csvErr drops encoding/csv's own "record on line N:" prefix, because the
// callers already say which line.
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func parseTime(s string) (time.Time, error) {
	return time.Parse(timeLayout, s)
}

// formatTime writes t the way NAB data files do. A fraction of a second,
// which NAB data never has, is kept rather than dropped.
func formatTime(t time.Time) string {
	return t.Format("2006-01-02 15:04:05.999999999")
}

func readLabels(path string) (map[string][][2]time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	labels, err := parseLabels(b)
	if err != nil {
		return nil, fmt.Errorf("read labels %s: %w", path, err)
	}
	return labels, nil
}

// parseLabels decodes combined_windows.json: an object from series name to a
// list of [start, end] timestamp strings.
func parseLabels(b []byte) (map[string][][2]time.Time, error) {
	var raw map[string][][]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	out := make(map[string][][2]time.Time, len(raw))
	for name, wins := range raw {
		if name == "" {
			return nil, errors.New("empty series name")
		}
		ws := make([][2]time.Time, 0, len(wins))
		for i, w := range wins {
			if len(w) != 2 {
				return nil, fmt.Errorf("%s: window %d has %d timestamps, want [start, end]", name, i, len(w))
			}
			var pair [2]time.Time
			for j, s := range w {
				t, err := parseTime(s)
				if err != nil {
					return nil, fmt.Errorf("%s: window %d: timestamp %q: want YYYY-MM-DD hh:mm:ss[.ffffff]", name, i, s)
				}
				pair[j] = t
			}
			if pair[1].Before(pair[0]) {
				return nil, fmt.Errorf("%s: window %d ends (%s) before it starts (%s)", name, i, w[1], w[0])
			}
			ws = append(ws, pair)
		}
		out[name] = ws
	}
	return out, nil
}

func readProfiles(path string) (map[string]Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	var raw map[string]struct {
		CostMatrix *struct {
			TP *float64 `json:"tpWeight"`
			FN *float64 `json:"fnWeight"`
			FP *float64 `json:"fpWeight"`
			TN *float64 `json:"tnWeight"`
		} `json:"CostMatrix"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("read profiles %s: decode: %w", path, err)
	}
	out := make(map[string]Profile, len(raw))
	for name, p := range raw {
		cm := p.CostMatrix
		if cm == nil || cm.TP == nil || cm.FN == nil || cm.FP == nil {
			return nil, fmt.Errorf("read profiles %s: %s: want a CostMatrix with tpWeight, fnWeight and fpWeight", path, name)
		}
		pr := Profile{TP: *cm.TP, FN: *cm.FN, FP: *cm.FP}
		if cm.TN != nil {
			pr.TN = *cm.TN
		}
		out[name] = pr
	}
	for _, name := range ProfileNames {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("read profiles %s: no %q profile; NAB's config/profiles.json has all three of %s", path, name, strings.Join(ProfileNames, ", "))
		}
	}
	return out, nil
}
