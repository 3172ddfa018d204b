package evidence

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// maxPlotFeatures is how many features the plot and summary show.
const maxPlotFeatures = 3

// plotFeatures picks the features to show: the anomaly's explanation by
// contribution, else the most surprising features of the anomalous
// window's score, else calls.
func plotFeatures(a *anomaly.Anomaly, scores []anomaly.Score) []features.ID {
	var out []features.ID
	expl := slices.Clone(a.Explanation)
	slices.SortStableFunc(expl, func(x, y anomaly.Feature) int { return cmp.Compare(y.Contribution, x.Contribution) })
	for _, f := range expl {
		if id, ok := featureID(f.Name); ok && !slices.Contains(out, id) && len(out) < maxPlotFeatures {
			out = append(out, id)
		}
	}
	if len(out) > 0 {
		return out
	}
	if s := windowScore(a, scores); s != nil {
		ids := make([]features.ID, 0, features.NumFeatures)
		for id := range features.NumFeatures {
			if int(id) < len(s.Surprise) && s.Surprise[id] > 0 && !math.IsNaN(s.Surprise[id]) {
				ids = append(ids, id)
			}
		}
		slices.SortStableFunc(ids, func(x, y features.ID) int { return cmp.Compare(s.Surprise[y], s.Surprise[x]) })
		out = ids[:min(len(ids), maxPlotFeatures)]
	}
	if len(out) == 0 {
		out = []features.ID{features.Calls}
	}
	return out
}

func featureID(name string) (features.ID, bool) {
	for id := range features.NumFeatures {
		if id.String() == name {
			return id, true
		}
	}
	return 0, false
}

// windowScore returns the score of the anomaly's window, nil if absent.
func windowScore(a *anomaly.Anomaly, scores []anomaly.Score) *anomaly.Score {
	for i := range scores {
		if scores[i].WindowStartMs == a.WindowStartMs {
			return &scores[i]
		}
	}
	return nil
}

func ts(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000 UTC") }

// writeSummary writes summary.txt: what happened, when, which features,
// observed against expected, and counts. Every string that came from
// events or the anomaly passes through text, so no input can forge a line.
func writeSummary(w io.Writer, req *Request, m *Manifest, t *tally, scores []anomaly.Score, now time.Time) error {
	a := &req.Anomaly
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("EVIDENCE BUNDLE %s\n", m.BundleID)
	p("Taken %s. manifest.json lists every file with its SHA-256; its own SHA-256 is recorded in the evidence chain.\n\n", ts(m.CreatedMs))

	p("WHAT HAPPENED\n")
	if a.Summary != "" {
		p("  %s\n", text(a.Summary, 600))
	}
	p("  Kind %s, severity %s, score %.4g.\n", text(a.Kind, 64), text(a.Severity, 32), a.Score)
	p("  Agent %s", quoted(a.AgentID))
	if a.Role != "" {
		p(", role %s", quoted(a.Role))
	}
	if a.Owner != "" {
		p(", owner %s", quoted(a.Owner))
	}
	if a.CredentialID != "" {
		p(", credential %s", quoted(a.CredentialID))
	}
	p(".\n  Anomaly %s", quoted(a.ID))
	if m.IncidentID != "" {
		p(", incident %s", quoted(m.IncidentID))
	}
	p(".\n")
	if a.PeerBaseline {
		p("  The agent was still warming up: it was scored against its peer group's baseline.\n")
	}
	if a.Count > 0 {
		p("  %d events hit the rule in the window.\n", a.Count)
	}
	if len(a.SourceIPs) > 0 {
		ips := make([]string, 0, len(a.SourceIPs))
		for _, ip := range a.SourceIPs[:min(len(a.SourceIPs), 10)] {
			ips = append(ips, quoted(ip))
		}
		p("  New source addresses: %s.\n", strings.Join(ips, ", "))
	}

	p("\nWHEN\n")
	p("  Anomalous window  %s to %s (%s)\n", ts(a.WindowStartMs), ts(a.WindowEndMs), time.Duration(a.WindowEndMs-a.WindowStartMs)*time.Millisecond)
	if a.DetectedMs > 0 {
		p("  Detected          %s\n", ts(a.DetectedMs))
	}
	p("  Evidence window   %s to %s (%s before, %s after the anomalous window)\n", ts(m.FromMs), ts(m.ToMs), req.Before, req.After)
	if m.ToMs > now.UnixMilli() {
		p("  NOTE: the evidence window ends after this snapshot was taken; events after %s are not in it.\n", ts(now.UnixMilli()))
	}

	p("\nWHICH FEATURES (observed against the baseline's expectation, anomalous window)\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  feature\tobserved\texpected\tratio\tsurprise\tshare\n")
	rows := 0
	width := a.WindowEndMs - a.WindowStartMs
	for _, f := range a.Explanation {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.3g\t%.0f%%\n", text(f.Name, 64), human(f.Name, f.Observed, width), human(f.Name, f.Expected, width), ratio(f.Observed, f.Expected), f.Surprise, 100*f.Contribution)
		rows++
	}
	if rows == 0 {
		if s := windowScore(a, scores); s != nil {
			for _, id := range plotFeatures(a, scores) {
				if int(id) < len(s.Values) && int(id) < len(s.Expected) && int(id) < len(s.Surprise) {
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.3g\t\n", id, human(id.String(), s.Values[id], width), human(id.String(), s.Expected[id], width), ratio(s.Values[id], s.Expected[id]), s.Surprise[id])
					rows++
				}
			}
		}
	}
	tw.Flush()
	if rows == 0 {
		p("  (none: a rule anomaly without feature scores)\n")
	}

	p("\nCOUNTS\n")
	if m.Truncated {
		p("  Events            %d: TRUNCATED at the cap of %d; the earliest events are kept, up to %s, later ones are not in this bundle\n", m.Events, m.MaxEvents, ts(t.last))
	} else {
		p("  Events            %d (all of the evidence window)\n", m.Events)
	}
	if t.n > 0 {
		p("  First, last event %s, %s\n", ts(t.first), ts(t.last))
		p("  Status            2xx %d, 3xx %d, 4xx %d, 5xx %d, 1xx %d, other %d\n", t.status[1], t.status[2], t.status[3], t.status[4], t.status[0], t.status[5])
		p("  Bytes             requests %s (%d), responses %s (%d)\n",
			features.FormatBytes(float64(t.reqBytes)), t.reqBytes, features.FormatBytes(float64(t.respBytes)), t.respBytes)
		more := ""
		if t.ipsCapped {
			more = " (at least)"
		}
		p("  Source addresses  %d distinct%s\n", len(t.ips), more)
		p("  Routes            %d distinct", len(t.routes))
		if t.otherRoutes > 0 {
			p(" and %d calls to routes past the first %d", t.otherRoutes, maxTallyKeys)
		}
		p("; most called:\n")
		type rc struct {
			key string
			n   int64
		}
		top := make([]rc, 0, len(t.routes))
		for k, n := range t.routes {
			top = append(top, rc{k, n})
		}
		slices.SortFunc(top, func(x, y rc) int {
			if c := cmp.Compare(y.n, x.n); c != 0 {
				return c
			}
			return strings.Compare(x.key, y.key)
		})
		for _, r := range top[:min(len(top), 10)] {
			p("    %8d  %s\n", r.n, text(r.key, 200))
		}
	}
	if len(scores) > 0 {
		untrained := 0
		for _, s := range scores {
			if !s.Trained {
				untrained++
			}
		}
		p("  Scored windows    %d, of which %d did not train the baseline (anomalous)\n", len(scores), untrained)
	}

	p("\nFILES\n")
	p("  %-14s the events, exactly as stored (canonical JSON), one per line, in event-time order\n", EventsJSONL)
	p("  %-14s the same events for spreadsheets; a cell starting with = + - @ has a ' prepended\n", EventsCSV)
	p("  %-14s the anomaly record as the detector published it\n", AnomalyJSON)
	p("  %-14s per window: score, and per feature observed, expected (baseline) and surprise\n", ScoresCSV)
	p("  %-14s this summary\n", SummaryTXT)
	p("  %-14s events per minute, the top features against the baseline's expectation and usual range, the window score\n", PlotPNG)
	p("  %-14s every file's SHA-256 and size, and the previous bundle's manifest hash\n", ManifestJSON)
	_, err := io.WriteString(w, b.String())
	return err
}

// human renders a feature value in its unit (features.FormatValue); an
// untrusted name only picks the unit, it is never printed here.
func human(name string, v float64, widthMs int64) string {
	return features.FormatValue(name, v, widthMs)
}

// ratio is observed over expected as "×340", "none usual", or "-".
func ratio(obs, exp float64) string {
	if r := features.FormatMultiple(obs, exp); r != "" {
		return r
	}
	return "-"
}

// text makes an untrusted string safe for one line of summary.txt:
// invalid UTF-8, control characters, line and paragraph separators and
// invisible format characters (bidi overrides) are written as \u escapes,
// and the result is cut to at most limit bytes of input.
func text(s string, limit int) string {
	cut := len(s) > limit
	if cut {
		s = s[:limit]
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError: // invalid UTF-8, or U+FFFD itself
			b.WriteString(`\ufffd`)
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}

// quoted is text in double quotes, for identifiers.
func quoted(s string) string {
	return `"` + strings.ReplaceAll(text(s, 200), `"`, `\"`) + `"`
}
