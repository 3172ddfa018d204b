package evidence

import (
	"bytes"
	"flag"
	"image/png"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"gonum.org/v1/plot"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/features"
)

var updatePlot = flag.Bool("update-plot", false, "rewrite docs/img/evidence-plot.png")

func TestBucketingIsWholeMinutes(t *testing.T) {
	min0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC).UnixMilli()
	for _, tc := range []struct {
		name       string
		from, to   int64
		wantBucket time.Duration
	}{
		{"default 15+5 around a minute window", min0 - 15*minuteMs, min0 + 6*minuteMs, time.Minute},
		{"start inside a minute", min0 + 12_345, min0 + 20*minuteMs, time.Minute},
		{"exactly 240 minutes", min0, min0 + 240*minuteMs, time.Minute},
		{"241 minutes", min0, min0 + 241*minuteMs, 2 * time.Minute},
		{"one day", min0, min0 + 1440*minuteMs, 6 * time.Minute},
		{"a week and a bit", min0 - 7*1440*minuteMs - 17, min0 + 5*minuteMs, 43 * time.Minute},
		{"one millisecond", min0 + 1, min0 + 2, time.Minute},
		{"before 1970", -10*minuteMs - 1, -1, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, bucket, n := bucketing(tc.from, tc.to)
			if bucket%minuteMs != 0 || time.Duration(bucket)*time.Millisecond != tc.wantBucket {
				t.Fatalf("bucket %d ms, want %s", bucket, tc.wantBucket)
			}
			if start%minuteMs != 0 || start > tc.from || tc.from-start >= minuteMs {
				t.Fatalf("first bucket starts at %d for a window from %d: want the whole minute at or before it", start, tc.from)
			}
			if n < 1 || n > plotBuckets || start+int64(n)*bucket < tc.to || start+int64(n-1)*bucket >= tc.to {
				t.Fatalf("%d buckets of %d ms from %d do not just cover [%d, %d)", n, bucket, start, tc.from, tc.to)
			}
		})
	}
}

// minuteScores returns 1-minute window scores of agent from..to (minutes
// after t0), trained and unremarkable: each feature's value strays from its
// expectation by a repeating pattern of -2..+2.
func minuteScores(agent string, from, to int) []anomaly.Score {
	var out []anomaly.Score
	for i := from; i < to; i++ {
		s := anomaly.Score{
			AgentID: agent, WindowStartMs: ms(time.Duration(i) * time.Minute), WindowEndMs: ms(time.Duration(i+1) * time.Minute),
			Score: 0.3, Severity: "none", Trained: true,
			Values: make([]float64, features.NumFeatures), Expected: make([]float64, features.NumFeatures),
			Surprise: make([]float64, features.NumFeatures),
		}
		for id := range features.NumFeatures {
			s.Expected[id] = 50
			s.Values[id] = 50 + float64((i%5+5)%5-2)
		}
		out = append(out, s)
	}
	return out
}

func makeAnomalous(s *anomaly.Score, severity string, score float64) {
	s.Severity, s.Score, s.Trained = severity, score, false
	for id := range features.NumFeatures {
		s.Values[id] *= 40
		s.Surprise[id] = 20
	}
}

// plotOf builds the plot of an anomaly at t0 over a 15+5 minute evidence
// window around its 1-minute window.
func plotOf(a anomaly.Anomaly, scores []anomaly.Score, before, after time.Duration) plotSpec {
	m := &Manifest{BundleID: "ev-test", FromMs: a.WindowStartMs - before.Milliseconds(), ToMs: a.WindowEndMs + after.Milliseconds()}
	t := newTally(m.FromMs, m.ToMs)
	return buildPlot(&a, m, t, scores, plotFeatures(&a, scores))
}

func minuteAnomaly(agent string) anomaly.Anomaly {
	a := testAnomaly(agent)
	a.WindowEndMs = ms(time.Minute)
	a.Explanation = []anomaly.Feature{
		{Name: "calls", Observed: 900, Expected: 100, Surprise: 7, Contribution: 0.1},
		{Name: "off_hours", Observed: 3, Expected: 180, Surprise: 9, Contribution: 0.15},
		{Name: "response_bytes", Observed: 5e7, Expected: 1e5, Surprise: 30, Contribution: 0.5},
		{Name: "denials_401_403", Observed: 40, Expected: 1, Surprise: 12, Contribution: 0.2},
		{Name: "distinct_routes", Observed: 9, Expected: 3, Surprise: 2, Contribution: 0.05},
	}
	return a
}

func TestPlotHasOnePanelPerTopFeature(t *testing.T) {
	a := minuteAnomaly("agent-7")
	scores := minuteScores("agent-7", -24*60, 10) // a day before, as the responder reads them
	makeAnomalous(&scores[len(scores)-10], "high", 12.5)
	sp := plotOf(a, scores, 15*time.Minute, 5*time.Minute)

	var kinds []string
	var feats []features.ID
	for _, p := range sp.Panels {
		kinds = append(kinds, p.Kind)
		if p.Kind == "feature" {
			feats = append(feats, p.Feature)
		}
	}
	// By contribution, the three largest that are window features
	// (off_hours is not one: it has no per-window series).
	if want := []features.ID{features.RespBytes, features.Denials, features.Calls}; !slices.Equal(feats, want) {
		t.Fatalf("feature panels %v, want %v", feats, want)
	}
	if want := []string{"events", "feature", "feature", "feature", "score"}; !slices.Equal(kinds, want) {
		t.Fatalf("panels %v, want %v", kinds, want)
	}
	if sp.BucketMs != minuteMs || sp.FromMs != ms(-15*time.Minute) || sp.ToMs != ms(6*time.Minute) {
		t.Fatalf("x range %d..%d in buckets of %d ms", sp.FromMs, sp.ToMs, sp.BucketMs)
	}
	if got := sp.Panels[0].YLabel; got != "events per min" {
		t.Errorf("events panel label %q", got)
	}
	for _, p := range sp.Panels[1:4] {
		if !strings.HasPrefix(p.YLabel, p.Feature.String()+" per min") {
			t.Errorf("panel label %q does not name %s per minute", p.YLabel, p.Feature)
		}
		// 21 one-minute windows in the 15+1+5 minute span, one step each,
		// over exactly its window.
		if len(p.Lines) != 2 || p.Lines[0].Label != "expected by the baseline" || !strings.HasPrefix(p.Lines[1].Label, "observed (anomalous window ") ||
			len(p.Lines[0].Segs) != 21 || len(p.Lines[1].Segs) != 21 {
			t.Fatalf("%s lines %+v", p.Feature, p.Lines)
		}
		for i, sg := range p.Lines[1].Segs {
			if sg.FromMs != ms(time.Duration(i-15)*time.Minute) || sg.ToMs-sg.FromMs != minuteMs {
				t.Fatalf("%s step %d over %d..%d", p.Feature, i, sg.FromMs, sg.ToMs)
			}
		}
		if len(p.BandHi) != 21 || len(p.BandLo) != 21 {
			t.Fatalf("%s band of %d/%d points", p.Feature, len(p.BandHi), len(p.BandLo))
		}
		// The residuals of the trained windows are -2..+2 evenly, so the
		// median absolute deviation is 1; the anomalous window trained
		// nothing and is left out of the count.
		wantHalf := bandSigmas * 1.4826
		if got := p.BandHi[0].Y - 50; math.Abs(got-wantHalf) > 1e-9 {
			t.Errorf("%s band half-width %v, want %v", p.Feature, got, wantHalf)
		}
		if !strings.Contains(p.BandLabel, "from 1449 trained windows") || !strings.Contains(p.BandLabel, "robust σ") {
			t.Errorf("%s band label %q", p.Feature, p.BandLabel)
		}
	}
	score := sp.Panels[4]
	if len(score.Lines) != 1 || len(score.Lines[0].Segs) != 21 || slices.MaxFunc(score.Lines[0].Segs, func(x, y seg) int { return cmpF(x.Y, y.Y) }).Y != 12.5 {
		t.Fatalf("score panel %+v", score.Lines)
	}
	// The anomalous window, 0..1 min, holds 40 × 48.
	if got := sp.Panels[1].Lines[1].Label; got != "observed (anomalous window 1.88 KB vs 50 B usual (×38))" {
		t.Errorf("response_bytes legend %q", got)
	}
	if got := unitFormat(features.RespBytes)(2.5 * 1024 * 1024); got != "2.5 MB" {
		t.Errorf("response_bytes ticks read %q", got)
	}
}

func cmpF(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func TestPlotShadesTheAnomalousWindows(t *testing.T) {
	a := minuteAnomaly("a")
	scores := minuteScores("a", -60, 10)
	at := func(min int) *anomaly.Score { return &scores[min+60] }
	makeAnomalous(at(-12), "medium", 8)
	makeAnomalous(at(-5), "high", 11)
	makeAnomalous(at(-4), "critical", 30) // touches -5: one span
	makeAnomalous(at(3), "low", 7.2)
	makeAnomalous(at(-40), "high", 11) // before the evidence window: not drawn
	sp := plotOf(a, scores, 15*time.Minute, 5*time.Minute)
	span := func(from, to int) [2]int64 {
		return [2]int64{ms(time.Duration(from) * time.Minute), ms(time.Duration(to) * time.Minute)}
	}
	want := [][2]int64{span(-12, -11), span(-5, -3), span(0, 1), span(3, 4)}
	if !slices.Equal(sp.Shaded, want) {
		t.Fatalf("shaded %v, want %v", sp.Shaded, want)
	}

	// A rule anomaly without scores: its own window, and no feature or
	// score panel to draw.
	r := minuteAnomaly("b")
	r.Kind, r.Explanation = anomaly.UnapprovedRoute, nil
	sp = plotOf(r, nil, 15*time.Minute, 5*time.Minute)
	if !slices.Equal(sp.Shaded, [][2]int64{span(0, 1)}) || len(sp.Panels) != 1 || sp.Panels[0].Kind != "events" {
		t.Fatalf("rule anomaly plot: shaded %v, %d panels", sp.Shaded, len(sp.Panels))
	}
	if want := attack.Describe(attack.OutOfRole).Title; !strings.HasSuffix(sp.Title, "  "+want) {
		t.Errorf("title %q does not name the attack class %q", sp.Title, want)
	}
}

func TestPlotOfALongSpanKeepsTheAnomalousWindow(t *testing.T) {
	a := minuteAnomaly("a")
	scores := minuteScores("a", -7*24*60, 5)
	spike := len(scores) - 5 - 3*24*60 - 17 // three days before, mid-bucket
	makeAnomalous(&scores[spike], "critical", 99)
	sp := plotOf(a, scores, 7*24*time.Hour, 4*time.Minute)
	if sp.BucketMs%minuteMs != 0 || (sp.ToMs-sp.FromMs)/sp.BucketMs > plotBuckets {
		t.Fatalf("buckets of %d ms over %d ms", sp.BucketMs, sp.ToMs-sp.FromMs)
	}
	score := sp.Panels[len(sp.Panels)-1]
	if score.Kind != "score" || len(score.Lines[0].Segs) > plotBuckets {
		t.Fatalf("score panel %s with %d steps", score.Kind, len(score.Lines[0].Segs))
	}
	found := false
	for _, sg := range score.Lines[0].Segs {
		in := sg.FromMs <= scores[spike].WindowStartMs && scores[spike].WindowEndMs <= sg.ToMs
		found = found || (sg.Y == 99 && in && sg.ToMs-sg.FromMs == sp.BucketMs)
	}
	if !found {
		t.Fatal("the anomalous window's score is not drawn over its bucket")
	}
	obs := sp.Panels[1].Lines[1]
	if !strings.HasSuffix(obs.Label, "; each 43 min the highest-scoring min window in it") {
		t.Errorf("observed label %q", obs.Label)
	}
	if !slices.ContainsFunc(sp.Shaded, func(s [2]int64) bool { return s[0] == scores[spike].WindowStartMs }) {
		t.Errorf("shaded %v lacks the anomalous window", sp.Shaded)
	}
}

func TestPlotLabelsAreEscaped(t *testing.T) {
	a := minuteAnomaly("agent\n<!here>\u202eevil\x00" + strings.Repeat("x", 200))
	a.Kind = "behaviour\r\nFAKE"
	a.Severity = "high\u2028line"
	sp := plotOf(a, minuteScores(a.AgentID, -30, 10), 15*time.Minute, 5*time.Minute)
	if strings.ContainsFunc(sp.Title, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) }) {
		t.Fatalf("title %q holds control or format characters", sp.Title)
	}
	for _, want := range []string{`agent\u000a<!here>\u202eevil\u0000`, `behaviour\u000d\u000aFAKE`, `high\u2028line`, "…"} {
		if !strings.Contains(sp.Title, want) {
			t.Errorf("title %q lacks %q", sp.Title, want)
		}
	}
	if len(sp.Title) > 300 {
		t.Errorf("title is %d bytes", len(sp.Title))
	}
	var b bytes.Buffer
	if err := renderPlot(&b, sp); err != nil {
		t.Fatal(err)
	}
}

func TestPlotIsDeterministic(t *testing.T) {
	a := minuteAnomaly("a")
	scores := minuteScores("a", -120, 10)
	makeAnomalous(&scores[len(scores)-10], "high", 12.5)
	render := func() []byte {
		var b bytes.Buffer
		if err := renderPlot(&b, plotOf(a, scores, 15*time.Minute, 5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	first := render()
	if !bytes.Equal(first, render()) {
		t.Fatal("the same bundle drew two different plots: bundles are hashed")
	}
}

func TestTimeTicksAreRoundMinutes(t *testing.T) {
	base := float64(t0.Unix())
	for _, tc := range []struct {
		span      time.Duration
		step      time.Duration
		wantFirst string
	}{
		{21 * time.Minute, 5 * time.Minute, "11:50"},
		{40 * time.Minute, 5 * time.Minute, "11:50"},
		{70 * time.Minute, 10 * time.Minute, "11:50"},
		{24 * time.Hour, 180 * time.Minute, "12:00"},
		{7 * 24 * time.Hour, 24 * time.Hour, "00:00"},
	} {
		lo := base - 15*60 + 7 // a few seconds past the minute
		ts := minuteTicks{"15:04"}.Ticks(lo, lo+tc.span.Seconds())
		var labelled []plot.Tick
		for _, tk := range ts {
			if tk.Label != "" {
				labelled = append(labelled, tk)
			}
			if int64(tk.Value)%60 != 0 {
				t.Fatalf("span %s: tick at %v is not on a whole minute", tc.span, tk.Value)
			}
		}
		if len(labelled) < 2 || len(labelled) > maxTimeTicks+1 || labelled[0].Label != tc.wantFirst ||
			labelled[1].Value-labelled[0].Value != tc.step.Seconds() {
			t.Errorf("span %s: labelled ticks %+v, want every %s from %s", tc.span, labelled, tc.step, tc.wantFirst)
		}
	}
}

func TestByteTicksAreRoundInTheirUnit(t *testing.T) {
	ts := unitTicks{format: unitFormat(features.RespBytes), bytes: true}.Ticks(0, 640*1024*1024)
	var labels []string
	for _, tk := range ts {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if want := []string{"0 B", "300 MB", "600 MB"}; !slices.Equal(labels, want) {
		t.Fatalf("byte ticks %v, want %v", labels, want)
	}
}

func TestHumanUnits(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{unitFormat(features.RespBytesMax)(1536), "1.5 KB"},
		{unitFormat(features.Calls)(1500), "1,500"},
		{unitFormat(features.Denials)(0.5), "0.5"},
		{humanDuration(minuteMs), "min"},
		{humanDuration(43 * minuteMs), "43 min"},
		{humanDuration(120 * minuteMs), "2 h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestExamplePlot draws the plot shown in docs/responder.md, shaped like
// the demo's exfiltration: a quiet agent that suddenly reads sensitive
// records, twenty a minute, with hundreds of megabytes of responses. Run
// with -update-plot to rewrite it.
func TestExamplePlot(t *testing.T) {
	a := minuteAnomaly("cs-agent-006")
	a.Kind, a.Severity = anomaly.Behaviour, "critical"
	a.Explanation = []anomaly.Feature{
		{Name: "sensitive_calls", Observed: 21, Expected: 0.04, Surprise: 132, Contribution: 0.46},
		{Name: "calls", Observed: 21, Expected: 1.1, Surprise: 45, Contribution: 0.16},
		{Name: "response_bytes", Observed: 6.4e8, Expected: 6.9e4, Surprise: 43, Contribution: 0.15},
	}
	scores := minuteScores(a.AgentID, -24*60, 10)
	for i := range scores {
		s := &scores[i]
		wave := 1 + 0.5*math.Sin(float64(i)/230)
		busy := float64(int(3 * (1 + math.Sin(float64(i)*1.7))))
		s.Expected[features.Calls], s.Values[features.Calls] = 1.1*wave, busy
		s.Expected[features.SensitiveCalls], s.Values[features.SensitiveCalls] = 0.04*busy, float64(i%97/96)
		s.Expected[features.RespBytes], s.Values[features.RespBytes] = 6.9e4*wave, 6.9e4*busy
	}
	n := len(scores)
	for k, i := range []int{n - 10, n - 9, n - 8, n - 7, n - 6} {
		s := &scores[i]
		s.Severity, s.Score, s.Trained = "critical", 101+float64(k*k%7)*3, false
		s.Values[features.Calls] = 21 + float64(k%3)
		s.Values[features.SensitiveCalls] = s.Values[features.Calls]
		s.Values[features.RespBytes] = s.Values[features.Calls] * 3.05e7
	}
	m := &Manifest{BundleID: "ev-4f1c0d6a9e2b7c35d8e0a1f2b3c4d5e6", FromMs: a.WindowStartMs - 15*minuteMs, ToMs: a.WindowEndMs + 5*minuteMs}
	tl := newTally(m.FromMs, m.ToMs)
	for i := range tl.nb {
		tl.buckets[i] = scores[n-10-15+i].Values[features.Calls]
	}
	var b bytes.Buffer
	if err := renderPlot(&b, buildPlot(&a, m, tl, scores, plotFeatures(&a, scores))); err != nil {
		t.Fatal(err)
	}
	const path = "../../../docs/img/evidence-plot.png"
	if *updatePlot {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The image was drawn on amd64; another architecture may fuse
	// floating-point operations differently and shift an anti-aliased
	// pixel, so elsewhere only its size is compared.
	if runtime.GOARCH != "amd64" {
		oc, err1 := png.DecodeConfig(bytes.NewReader(old))
		nc, err2 := png.DecodeConfig(bytes.NewReader(b.Bytes()))
		if err1 != nil || err2 != nil || oc != nc {
			t.Fatalf("%s is %+v (%v), the plot this code draws %+v (%v)", path, oc, err1, nc, err2)
		}
		return
	}
	if !bytes.Equal(old, b.Bytes()) {
		t.Fatalf("%s is not the plot this code draws: run go test ./internal/responder/evidence -run TestExamplePlot -update-plot", path)
	}
}
