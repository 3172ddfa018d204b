package nab

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testdata/nab holds three NAB files as NAB ships them, with their labels.
const (
	noAnomaly = "artificialNoAnomaly/art_daily_small_noise.csv"
	jumpsUp   = "artificialWithAnomaly/art_daily_jumpsup.csv"
	ec2       = "realKnownCause/ec2_request_latency_system_failure.csv"
)

func TestLoad(t *testing.T) {
	c, err := Load("testdata/nab")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range c.Series {
		names = append(names, s.Name)
	}
	if want := []string{noAnomaly, jumpsUp, ec2}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("series %q, want %q (sorted)", names, want)
	}
	for _, tc := range []struct {
		name      string
		rows      int
		windows   int
		first     time.Time
		firstVal  float64
		lastVal   float64
		window0   [2]time.Time
		probation int
	}{
		{noAnomaly, 4032, 0, time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC), 18.324918539200002, 0, [2]time.Time{}, 604},
		{jumpsUp, 4032, 1, time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC), 19.761251902999998, 0,
			[2]time.Time{time.Date(2014, 4, 10, 16, 15, 0, 0, time.UTC), time.Date(2014, 4, 12, 1, 45, 0, 0, time.UTC)}, 604},
		{ec2, 4032, 3, time.Date(2014, 3, 7, 3, 41, 0, 0, time.UTC), 45.868, 30.962,
			[2]time.Time{time.Date(2014, 3, 14, 3, 31, 0, 0, time.UTC), time.Date(2014, 3, 14, 14, 41, 0, 0, time.UTC)}, 604},
	} {
		s, ok := c.Lookup(tc.name)
		if !ok {
			t.Fatalf("Lookup(%q) found nothing", tc.name)
		}
		if len(s.Times) != tc.rows || len(s.Values) != tc.rows || len(s.Windows) != tc.windows {
			t.Errorf("%s: %d times, %d values, %d windows; want %d rows and %d windows", tc.name, len(s.Times), len(s.Values), len(s.Windows), tc.rows, tc.windows)
		}
		if !s.Times[0].Equal(tc.first) || s.Values[0] != tc.firstVal {
			t.Errorf("%s: first row %s %v, want %s %v", tc.name, s.Times[0], s.Values[0], tc.first, tc.firstVal)
		}
		if tc.lastVal != 0 && s.Values[len(s.Values)-1] != tc.lastVal {
			t.Errorf("%s: last value %v, want %v", tc.name, s.Values[len(s.Values)-1], tc.lastVal)
		}
		if tc.windows > 0 && s.Windows[0] != tc.window0 {
			t.Errorf("%s: first window %v, want %v", tc.name, s.Windows[0], tc.window0)
		}
	}
	want := map[string]Profile{
		"standard":           {TP: 1, FN: 1, FP: 0.11, TN: 1},
		"reward_low_FP_rate": {TP: 1, FN: 1, FP: 0.22, TN: 1},
		"reward_low_FN_rate": {TP: 1, FN: 2, FP: 0.11, TN: 1},
	}
	if len(c.Profiles) != len(want) {
		t.Errorf("profiles %v, want %v", c.Profiles, want)
	}
	for name, p := range want {
		if c.Profiles[name] != p {
			t.Errorf("profile %s = %+v, want %+v", name, c.Profiles[name], p)
		}
	}
}

func TestLoadOnly(t *testing.T) {
	c, err := Load("testdata/nab", ec2, ec2)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Series) != 1 || c.Series[0].Name != ec2 {
		t.Fatalf("Load(only %s) gave %d series", ec2, len(c.Series))
	}
	_, err = Load("testdata/nab", "realKnownCause/nope.csv")
	if err == nil || !strings.Contains(err.Error(), `"realKnownCause/nope.csv": not in`) {
		t.Fatalf("Load of an unknown series: error %v, want one naming it", err)
	}
}

// TestLoadErrors builds broken copies of a tiny corpus and checks that the
// error points at the file, and the line where there is one.
func TestLoadErrors(t *testing.T) {
	const good = "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n2014-04-01 00:10:00,3\n"
	goodLabels := `{"c/f.csv": [["2014-04-01 00:05:00.000000", "2014-04-01 00:10:00.000000"]]}`
	profiles, err := os.ReadFile("testdata/nab/config/profiles.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data, labels, profiles string
		want                         string
	}{
		{"bad value", strings.Replace(good, ",2\n", ",two\n", 1), goodLabels, string(profiles), `f.csv:3: value "two"`},
		{"NaN value", strings.Replace(good, ",2\n", ",NaN\n", 1), goodLabels, string(profiles), `f.csv:3: value "NaN": want a finite number`},
		{"bad timestamp", strings.Replace(good, "00:10:00", "0:10", 1), goodLabels, string(profiles), `f.csv:4: timestamp "2014-04-01 0:10"`},
		{"extra field", strings.Replace(good, ",3\n", ",3,4\n", 1), goodLabels, string(profiles), "f.csv:4: wrong number of fields"},
		{"bad header", strings.Replace(good, "value", "val", 1), goodLabels, string(profiles), `f.csv:1: header is "timestamp,val"`},
		{"unterminated quote", good + "\"2014-04-01 00:15:00,4\n", goodLabels, string(profiles), `f.csv:5: extraneous or missing " in quoted-field`},
		{"no rows", "timestamp,value\n", goodLabels, string(profiles), "f.csv:2: no rows"},
		{"empty file", "", goodLabels, string(profiles), "f.csv:1: read header: EOF"},
		{"window off the rows", good, `{"c/f.csv": [["2014-04-01 00:06:00", "2014-04-01 00:10:00"]]}`, string(profiles), "labels for c/f.csv in"},
		{"labels not JSON", good, `{"c/f.csv": [`, string(profiles), "combined_windows.json: decode"},
		{"window of one timestamp", good, `{"c/f.csv": [["2014-04-01 00:05:00"]]}`, string(profiles), "window 0 has 1 timestamps"},
		{"window backwards", good, `{"c/f.csv": [["2014-04-01 00:10:00", "2014-04-01 00:05:00"]]}`, string(profiles), "ends (2014-04-01 00:05:00) before it starts"},
		{"profile missing", good, goodLabels, `{"standard": {"CostMatrix": {"tpWeight": 1, "fnWeight": 1, "fpWeight": 0.11}}}`, `no "reward_low_FP_rate" profile`},
		{"profile without weights", good, goodLabels, `{"standard": {}}`, "standard: want a CostMatrix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "data", "c", "f.csv"), tc.data)
			write(t, filepath.Join(dir, "labels", "combined_windows.json"), tc.labels)
			write(t, filepath.Join(dir, "config", "profiles.json"), tc.profiles)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("missing data file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "labels", "combined_windows.json"), goodLabels)
		write(t, filepath.Join(dir, "config", "profiles.json"), string(profiles))
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join("data", "c", "f.csv")) {
			t.Fatalf("Load error = %v, want one naming the missing file", err)
		}
	})
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzNABSeries: whatever parseSeries accepts, written back the way
// WriteResults writes rows, parses to the same series.
func FuzzNABSeries(f *testing.F) {
	for _, name := range []string{noAnomaly, jumpsUp, ec2} {
		b, err := os.ReadFile(filepath.Join("testdata/nab/data", name))
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		f.Add(strings.Join(lines[:6], ""))
	}
	f.Add("timestamp,value\n2014-04-01 00:00:00.5,-1e-300\r\n")
	f.Add("\ufefftimestamp,value\n\"2014-04-01 00:00:00\",\"7\"\n")
	f.Add("timestamp,value\n2014-04-01 00:00:00,1,2\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := parseSeries("c/f.csv", strings.NewReader(in))
		if err != nil {
			return // rejecting is fine; panicking is not
		}
		if len(s.Times) == 0 || len(s.Times) != len(s.Values) {
			t.Fatalf("accepted %q with %d times and %d values", in, len(s.Times), len(s.Values))
		}
		var out strings.Builder
		out.WriteString("timestamp,value\n")
		for i, tm := range s.Times {
			out.WriteString(formatTime(tm) + "," + formatValue(s.Values[i]) + "\n")
		}
		again, err := parseSeries("c/f.csv", strings.NewReader(out.String()))
		if err != nil {
			t.Fatalf("round trip of %q: %v", in, err)
		}
		for i := range s.Times {
			if !again.Times[i].Equal(s.Times[i]) || math.Float64bits(again.Values[i]) != math.Float64bits(s.Values[i]) {
				t.Fatalf("round trip of %q: row %d is %s,%v; want %s,%v", in, i, again.Times[i], again.Values[i], s.Times[i], s.Values[i])
			}
		}
	})
}

// FuzzNABLabels: whatever parseLabels accepts, encoded again, decodes to
// the same windows.
func FuzzNABLabels(f *testing.F) {
	b, err := os.ReadFile("testdata/nab/labels/combined_windows.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"a/b.csv": []}`))
	f.Add([]byte(`{"a/b.csv": [["2014-04-01 00:05:00", "2014-04-01 00:05:00.000001"]]}`))
	f.Add([]byte(`{"a/b.csv": [["2014-04-01 00:05:00"]]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		labels, err := parseLabels(in)
		if err != nil {
			return
		}
		raw := map[string][][]string{}
		for name, ws := range labels {
			raw[name] = [][]string{}
			for _, w := range ws {
				if w[1].Before(w[0]) {
					t.Fatalf("accepted a backwards window in %q", in)
				}
				raw[name] = append(raw[name], []string{formatTime(w[0]), formatTime(w[1])})
			}
		}
		enc, err := json.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseLabels(enc)
		if err != nil {
			t.Fatalf("round trip of %q: %v", in, err)
		}
		if len(again) != len(labels) {
			t.Fatalf("round trip of %q: %d series, want %d", in, len(again), len(labels))
		}
		for name, ws := range labels {
			if len(again[name]) != len(ws) {
				t.Fatalf("round trip of %q: %s has %d windows, want %d", in, name, len(again[name]), len(ws))
			}
			for i, w := range ws {
				if !again[name][i][0].Equal(w[0]) || !again[name][i][1].Equal(w[1]) {
					t.Fatalf("round trip of %q: %s window %d is %v, want %v", in, name, i, again[name][i], w)
				}
			}
		}
	})
}
