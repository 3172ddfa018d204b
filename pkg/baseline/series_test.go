package baseline

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// feed streams values at 5-minute steps from a Monday and returns the
// results.
func feed(p *SeriesParams, vals []float64) []SeriesResult {
	var s Series
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	out := make([]SeriesResult, len(vals))
	for i, v := range vals {
		out[i] = s.Observe(p, t0+int64(i)*300_000, v)
	}
	return out
}

// daily is a noisy daily cycle sampled every 5 minutes.
func daily(rng *rand.Rand, n int, amp, noise float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 50 + amp*math.Sin(2*math.Pi*float64(i)/288) + noise*rng.NormFloat64()
	}
	return v
}

func TestSeriesDetectsPlantedChanges(t *testing.T) {
	p := DefaultSeriesParams()
	const n, at = 288 * 10, 288 * 7
	for _, tc := range []struct {
		name  string
		plant func(v []float64)
	}{
		{"level shift up", func(v []float64) {
			for i := at; i < len(v); i++ {
				v[i] += 25
			}
		}},
		{"spike", func(v []float64) { v[at] += 60 }},
		{"flat instead of the daily cycle", func(v []float64) {
			for i := at; i < at+288; i++ {
				v[i] = 50
			}
		}},
		{"noise burst", func(v []float64) {
			rng := rand.New(rand.NewPCG(9, 9))
			for i := at; i < at+60; i++ {
				v[i] += 15 * rng.NormFloat64()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := daily(rand.New(rand.NewPCG(1, 2)), n, 20, 1)
			tc.plant(v)
			rs := feed(&p, v)
			first := -1
			for i := at; i < at+288 && first < 0; i++ {
				if rs[i].Reported >= p.AlertScore {
					first = i
				}
			}
			if first < 0 {
				t.Fatalf("no report at or above %g in the day after the change", p.AlertScore)
			}
			t.Logf("reported %d points after the change, score %.1f", first-at, rs[first].Score)
			if first-at > 48 {
				t.Errorf("reported %d points (4 h) late", first-at)
			}
			for i := 288 * 3; i < at; i++ {
				if rs[i].Reported >= p.AlertScore {
					t.Errorf("false report at point %d (score %.1f) before the change", i, rs[i].Score)
					break
				}
			}
		})
	}
}

func TestSeriesQuietOnNormalSeries(t *testing.T) {
	p := DefaultSeriesParams()
	for _, tc := range []struct {
		name string
		vals []float64
	}{
		{"daily cycle", daily(rand.New(rand.NewPCG(3, 4)), 288*14, 20, 1)},
		{"flat", make([]float64, 288*14)},
		{"white noise", daily(rand.New(rand.NewPCG(5, 6)), 288*14, 0, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := feed(&p, tc.vals)
			reports := 0
			for i := 288 * 2; i < len(rs); i++ {
				if rs[i].Reported >= p.AlertScore {
					reports++
				}
			}
			// About 1e-5 of points may pass p <= 1e-5 by chance; the decaying
			// maximum cuts that further.
			if reports > 2 {
				t.Errorf("%d reports on %d normal points, want at most 2", reports, len(rs)-288*2)
			}
		})
	}
}

// One change is one detection: after a lasting shift, later points of the
// same episode are not reported again unless they are far more surprising.
func TestSeriesReportsAChangeOnce(t *testing.T) {
	p := DefaultSeriesParams()
	v := daily(rand.New(rand.NewPCG(7, 8)), 288*10, 20, 1)
	for i := 288 * 7; i < len(v); i++ {
		v[i] += 25
	}
	rs := feed(&p, v)
	reports := 0
	for i := 288 * 7; i < len(rs); i++ {
		if rs[i].Reported >= p.AlertScore {
			reports++
		}
	}
	if reports == 0 || reports > 20 {
		t.Errorf("%d reports over the shifted 3 days, want between 1 and 20", reports)
	}
	// The poisoning guard slows learning of the new level, but it is
	// learnt: by the last day the score is back near zero.
	last := rs[len(rs)-1]
	if last.Score > p.AlertScore {
		t.Errorf("still scoring %.1f at the end: the new level was never learnt", last.Score)
	}
}

// The report rule is calibrated per series: a series that pages often
// (here a burst every 100 points) must stay quiet longer after each report
// than one that never paged, so it pages less; a series that never paged
// reports its first change exactly as fast as without the calibration.
func TestSeriesReportRateStretchesQuiet(t *testing.T) {
	calibrated := DefaultSeriesParams()
	calibrated.RarityReports = 0 // the rarity bar has its own tests
	flat := calibrated
	flat.ReportRefractory = 0
	count := func(p *SeriesParams, v []float64, from int) (reports, first int) {
		first = -1
		for i, r := range feed(p, v) {
			if i >= from && r.Reported >= p.AlertScore {
				reports++
				if first < 0 {
					first = i
				}
			}
		}
		return reports, first
	}
	bursty := daily(rand.New(rand.NewPCG(9, 10)), 288*20, 20, 1)
	for i := 1000; i < len(bursty); i += 100 {
		for j := range 3 {
			bursty[i+j] += 40
		}
	}
	nCal, _ := count(&calibrated, bursty, 1000)
	nFlat, _ := count(&flat, bursty, 1000)
	if nFlat < 5 || nCal >= nFlat {
		t.Errorf("bursty series: %d reports calibrated, %d with one refractory for all; want fewer calibrated (and the bursts reported at all)", nCal, nFlat)
	}

	smooth := daily(rand.New(rand.NewPCG(11, 12)), 288*10, 20, 1)
	for i := 288 * 7; i < len(smooth); i++ {
		smooth[i] += 25
	}
	_, firstCal := count(&calibrated, smooth, 288*3)
	_, firstFlat := count(&flat, smooth, 288*3)
	if firstCal < 288*7 || firstCal > 288*7+5 || firstCal != firstFlat {
		t.Errorf("smooth series: first report at %d calibrated, %d flat; want both within 5 points of the change at %d", firstCal, firstFlat, 288*7)
	}
	t.Logf("bursty: %d reports calibrated, %d flat", nCal, nFlat)
}

func TestSeriesIgnoresNaNAndInf(t *testing.T) {
	p := DefaultSeriesParams()
	var s Series
	for i, v := range []float64{1, math.NaN(), math.Inf(1), 2} {
		r := s.Observe(&p, int64(i)*60_000, v)
		if r.Score != 0 || math.IsNaN(r.Surprise) {
			t.Fatalf("point %d (%v): got %+v", i, v, r)
		}
	}
	if s.n != 2 {
		t.Errorf("learnt %v points, want 2 (NaN and Inf skipped)", s.n)
	}
}

func TestSeriesParamsValidate(t *testing.T) {
	if err := DefaultSeriesParams().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	p := DefaultSeriesParams()
	p.HalfLife, p.AnomalousWeight, p.PredictorSlack = 0, 2, 0.5
	p.ReportHalfLife, p.ReportRefractory, p.TailSurprise = 0, -1, -1
	p.RarityReports, p.RarityHalfLife = -1, 0
	err := p.Validate()
	for _, want := range []string{"half_life", "anomalous_weight", "predictor_slack", "report_half_life", "report_refractory", "tail_surprise", "rarity_reports", "rarity_half_life"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestTailSurprise(t *testing.T) {
	for _, tc := range []struct {
		sur, t, want float64
	}{
		{0, 60, 0},
		{30, 60, 30},                    // below the knee: in full
		{60, 60, 60},                    // at the knee: continuous
		{60 * math.E, 60, 120},          // one e-fold beyond: one more knee
		{60 * math.E * math.E, 60, 180}, // two e-folds
		{1e12, 60, 60 * (1 + math.Log(1e12/60))},
		{1e12, 0, 1e12}, // 0: no compression
		{5, 0, 5},
	} {
		if got := tailSurprise(tc.sur, tc.t); math.Abs(got-tc.want) > 1e-9*max(1, tc.want) {
			t.Errorf("tailSurprise(%g, %g) = %g, want %g", tc.sur, tc.t, got, tc.want)
		}
	}
	// Monotone, so a more surprising point never counts less.
	prev := 0.0
	for sur := 0.0; sur < 1e6; sur = sur*1.5 + 1 {
		got := tailSurprise(sur, 60)
		if got < prev {
			t.Fatalf("tailSurprise decreases at %g: %g after %g", sur, got, prev)
		}
		prev = got
	}
}

// One absurd point (a counter glitch a million scales off) must not hold
// the series anomalous for a day: with the surprise's tail compressed the
// score falls back below the guard within half a day (144 points), where
// the raw surprise held it there until the lasting "anomaly" became a
// change point (288). The glitch is still reported.
func TestSeriesGlitchFades(t *testing.T) {
	const n, at = 288 * 8, 288 * 6
	v := daily(rand.New(rand.NewPCG(3, 4)), n, 20, 1)
	v[at] += 1e6
	anomalousAfter := func(p SeriesParams) (int, float64) {
		rs := feed(&p, v)
		k := 0
		for i := at + 1; i < n; i++ {
			if rs[i].Anomalous {
				k++
			}
		}
		return k, rs[at].Reported
	}
	p := DefaultSeriesParams()
	k, rep := anomalousAfter(p)
	if rep < p.AlertScore {
		t.Fatalf("the glitch was not reported (reported score %.1f)", rep)
	}
	p.TailSurprise = 0
	kRaw, _ := anomalousAfter(p)
	t.Logf("anomalous points after the glitch: %d compressed, %d raw", k, kRaw)
	if k > 144 || kRaw < 2*k {
		t.Errorf("anomalous points after the glitch: %d with the tail compressed (want <= 144, at most half the %d without)", k, kRaw)
	}
}

// The rarity bar: a series that pages on every burst (here a burst every
// 150 points) is muted once its decaying count of pages reaches
// RarityReports (never before it has paged that many times), and pages
// again once the count has decayed below it; over the 40 days it pages
// fewer times than without the bar.
func TestSeriesRarityBarMutesBurstySeries(t *testing.T) {
	p := DefaultSeriesParams()
	off := p
	off.RarityReports = 0
	v := daily(rand.New(rand.NewPCG(13, 14)), 288*40, 20, 1)
	for i := 1000; i+3 < len(v); i += 150 {
		for j := range 3 {
			v[i+j] += 40
		}
	}
	var s Series
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	pages, mutes, firstMute, pagesAfterMute := 0, 0, -1, 0
	for i, x := range v {
		before := s.rarity * math.Exp2(-1/p.RarityHalfLife)
		r := s.Observe(&p, t0+int64(i)*300_000, x)
		switch {
		case r.Muted:
			if r.Reported != 0 || !r.Anomalous {
				t.Fatalf("point %d: muted with Reported %g, Anomalous %v; want 0, true", i, r.Reported, r.Anomalous)
			}
			if before < p.RarityReports {
				t.Fatalf("point %d: muted with a count of %.2f pages, below the bar of %g", i, before, p.RarityReports)
			}
			mutes++
			if firstMute < 0 {
				firstMute = i
				if pages < int(p.RarityReports) {
					t.Fatalf("first muted at point %d after %d pages, want at least %g", i, pages, p.RarityReports)
				}
			}
		case r.Reported >= p.GuardScore:
			if before >= p.RarityReports {
				t.Fatalf("point %d: paged with a count of %.2f pages, at or above the bar of %g", i, before, p.RarityReports)
			}
			pages++
			if firstMute >= 0 {
				pagesAfterMute++
			}
		}
	}
	without := 0
	for _, r := range feed(&off, v) {
		if r.Muted {
			t.Fatal("muted with RarityReports 0")
		}
		if r.Reported >= p.GuardScore {
			without++
		}
	}
	t.Logf("%d pages and %d muted with the bar (first muted at %d, %d pages after it); %d pages without", pages, mutes, firstMute, pagesAfterMute, without)
	if firstMute < 0 || pagesAfterMute == 0 {
		t.Fatalf("first muted at %d, %d pages after it: want muted, then paging again once the count decays", firstMute, pagesAfterMute)
	}
	if pages >= without {
		t.Errorf("%d pages with the bar, %d without: want fewer with it", pages, without)
	}
}

// A smooth series with one anomaly never comes near the bar: it pages as
// it would without it, and nothing is muted.
func TestSeriesRarityBarSparesSmoothSeries(t *testing.T) {
	p := DefaultSeriesParams()
	off := p
	off.RarityReports = 0
	const at = 288 * 7
	v := daily(rand.New(rand.NewPCG(15, 16)), 288*10, 20, 1)
	v[at] += 60
	with, without := feed(&p, v), feed(&off, v)
	for i := range with {
		if with[i].Muted {
			t.Fatalf("point %d muted on a smooth series", i)
		}
		if with[i] != without[i] {
			t.Fatalf("point %d: %+v with the bar, %+v without", i, with[i], without[i])
		}
	}
	if with[at].Reported < p.AlertScore {
		t.Fatalf("the spike at %d reported %.1f, want at least %g", at, with[at].Reported, p.AlertScore)
	}
}
