package sim

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// TestRenderMatchesGateway holds the simulator's fast renderer to
// gateway.Render, byte for byte, over every format, carrier, incident and
// the hostile identities of garbage.
func TestRenderMatchesGateway(t *testing.T) {
	s := mustNew(t, Config{Seed: 21, Agents: 120, Start: tuesday.Add(9 * time.Hour), Duration: 6 * time.Hour})
	n := 0
	check := func(format string, e *event.Event, h gateway.RenderHints) {
		t.Helper()
		n++
		if got, want := render(format, e, h), gateway.Render(format, e, h); !bytes.Equal(got, want) {
			t.Fatalf("render(%s) differs from gateway.Render:\n got %s\nwant %s", format, got, want)
		}
	}
	for s.minute < s.end {
		s.fill()
		for i := range s.buf {
			it := &s.buf[i]
			check(it.ev.Format, &it.ev, it.a.ident)
			if i%97 == 0 {
				for _, id := range hostileIDs {
					h := hostileIdentity(it.a, id, s.cfg.Start, s.cfg.Start)
					ev := it.ev
					ev.AgentID = id
					check(ev.Format, &ev, h)
				}
			}
		}
	}
	// Values the simulator never makes, so a divergence in rarely taken
	// branches shows too.
	odd := event.Event{EventTimeMs: tuesday.UnixMilli() + 7, Method: "GET", Path: "/x", Status: 200, UserAgent: "a\"b\\c\u2028"}
	for _, f := range KnownFormats {
		check(f, &odd, gateway.RenderHints{ConsumerID: "only-id"})
		check(f, &odd, gateway.RenderHints{})
	}
	if n < 10000 {
		t.Fatalf("only %d lines compared", n)
	}
}

// TestParseAgreesWithTruth parses every line with pkg/gateway's default
// parser: good lines must give their truth event, bad lines the expected
// reject reason.
func TestParseAgreesWithTruth(t *testing.T) {
	good, bad := parseAll(t, Config{Seed: 17, Start: tuesday.Add(6 * time.Hour), Duration: 4 * time.Hour, GarbageRate: 0.03})
	for _, f := range KnownFormats {
		if good[f] == 0 {
			t.Errorf("no good %s lines parsed", f)
		}
	}
	for _, k := range GarbageKinds {
		if bad[k] == 0 {
			t.Errorf("no %s lines", k)
		}
	}
	t.Logf("good lines by format %v; bad lines by kind %v", good, bad)
}

// TestParseEachFormat runs every kind of bad line in every format's
// clothes, which the mixed run above covers only by chance.
func TestParseEachFormat(t *testing.T) {
	for _, f := range KnownFormats {
		t.Run(f, func(t *testing.T) {
			kinds := slices.DeleteFunc(slices.Clone(GarbageKinds), func(k GarbageKind) bool { return k == GarbageTooLarge })
			good, bad := parseAll(t, Config{Seed: 5, Agents: 12, Formats: []string{f}, Start: tuesday.Add(10 * time.Hour),
				Duration: 40 * time.Minute, GarbageRate: 0.2, GarbageKinds: kinds, Incidents: []IncidentSpec{}})
			if good[f] == 0 || len(good) != 1 {
				t.Errorf("good lines by format %v; want only %s", good, f)
			}
			for _, k := range kinds {
				if bad[k] < 5 {
					t.Errorf("%d %s lines", bad[k], k)
				}
			}
		})
	}
}

// parseAll parses every line of a simulation with pkg/gateway's default
// parser at the simulated clock and reports each disagreement with the
// line's truth once. It returns the good lines by format and the bad lines
// by kind.
func parseAll(t *testing.T, cfg Config) (map[string]int, map[GarbageKind]int) {
	t.Helper()
	p, err := gateway.NewParser(gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := mustNew(t, cfg)
	good, bad := map[string]int{}, map[GarbageKind]int{}
	mismatches := map[string]int{}
	for i := 0; ; i++ {
		l, ok := s.Next()
		if !ok {
			break
		}
		got, err := p.Parse(l.Raw, gateway.Source{Topic: "raw", Partition: 1, Offset: int64(i)}, s.Clock())
		if !l.Good {
			bad[l.Garbage]++
			var pe *gateway.ParseError
			if !errors.As(err, &pe) || pe.Reason != l.Reason {
				key := fmt.Sprintf("%s/%s: want %s, got %v", l.Garbage, l.Format, l.Reason, err)
				if mismatches[key] == 0 {
					t.Errorf("%s\n  line %.300q", key, l.Raw)
				}
				mismatches[key]++
			}
			continue
		}
		if err != nil {
			t.Fatalf("good %s line rejected: %v\n  %s", l.Format, err, l.Raw)
		}
		good[l.Format]++
		want := l.Event
		if got.EventID != event.ID("raw", 1, int64(i)) || got.Topic != "raw" || got.Offset != int64(i) {
			t.Fatalf("event id/coordinates not from the source: %+v", got)
		}
		got.EventID, got.IngestTimeMs, got.Topic, got.Partition, got.Offset = "", 0, "", 0, 0
		if len(got.QueryParams) == 0 && len(want.QueryParams) == 0 {
			got.QueryParams, want.QueryParams = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			key := l.Format + ": " + diff(want, got)
			if mismatches[key] == 0 {
				t.Errorf("%s\n  line %.400s", key, l.Raw)
			}
			mismatches[key]++
		}
	}
	return good, bad
}

// diff names the fields where got differs from want.
func diff(want, got event.Event) string {
	var out []string
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range wv.NumField() {
		if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
			out = append(out, fmt.Sprintf("%s want %v got %v", wv.Type().Field(i).Name, wv.Field(i).Interface(), gv.Field(i).Interface()))
		}
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}
