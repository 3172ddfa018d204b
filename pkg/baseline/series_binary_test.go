package baseline

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// seriesAt streams vals one a minute from a Monday into s and returns the
// time of the next point.
func seriesAt(s *Series, p *SeriesParams, t0 int64, vals []float64) int64 {
	for i, v := range vals {
		s.Observe(p, t0+int64(i)*60_000, v)
	}
	return t0 + int64(len(vals))*60_000
}

// TestSeriesBinaryRoundTrip: a series saved at any point and restored
// continues exactly as the original: the same results for the rest of the
// stream, and the same bytes at the end. Truncations are rejected.
func TestSeriesBinaryRoundTrip(t *testing.T) {
	p := DefaultSeriesParams()
	rng := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 3*1440)
	for i := range vals {
		vals[i] = 400 + 200*math.Sin(2*math.Pi*float64(i)/1440) + 20*rng.NormFloat64()
		if i > 2500 && i < 2600 {
			vals[i] += 500 // a change the series reports and adapts to
		}
	}
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	for _, cut := range []int{0, 1, 59, 700, 2550, len(vals)} {
		var live Series
		at := seriesAt(&live, &p, t0, vals[:cut])
		enc := live.AppendBinary(nil)
		var back Series
		if err := back.UnmarshalBinary(enc); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if !reflect.DeepEqual(back, live) {
			t.Fatalf("cut %d: restored series differs", cut)
		}
		for i, v := range vals[cut:] {
			tm := at + int64(i)*60_000
			if a, b := live.Observe(&p, tm, v), back.Observe(&p, tm, v); a != b {
				t.Fatalf("cut %d, point %d: live %+v, restored %+v", cut, cut+i, a, b)
			}
		}
		if !bytes.Equal(live.AppendBinary(nil), back.AppendBinary(nil)) {
			t.Fatalf("cut %d: final states differ", cut)
		}
		if cut == 700 {
			for i := range enc {
				if err := new(Series).UnmarshalBinary(enc[:i]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("truncated to %d of %d bytes: %v", i, len(enc), err)
				}
			}
			if err := new(Series).UnmarshalBinary(append(enc, 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a trailing byte: %v", err)
			}
		}
		if got := live.Points(); got != len(vals) {
			t.Fatalf("Points = %d after %d points", got, len(vals))
		}
	}
	var empty Series
	var back Series
	if err := back.UnmarshalBinary(empty.AppendBinary(nil)); err != nil || !reflect.DeepEqual(back, empty) {
		t.Fatalf("empty series: %v", err)
	}
}

func TestSeriesUnmarshalRejects(t *testing.T) {
	p := DefaultSeriesParams()
	var s Series
	seriesAt(&s, &p, 0, []float64{1, 2, 3, 4, 5})
	enc := s.AppendBinary(nil)
	bad := func(name string, b []byte) {
		t.Helper()
		before := s
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
		if !reflect.DeepEqual(s, before) {
			t.Errorf("%s: a rejected input changed the series", name)
		}
	}
	bad("empty", nil)
	bad("version", append([]byte{SeriesVersion + 1}, enc[1:]...))
	nan := bytes.Clone(enc)
	copy(nan[1:], []byte{1, 0, 0, 0, 0, 0, 0xF8, 0x7F}) // n is NaN
	bad("NaN", nan)
	neg := bytes.Clone(enc)
	copy(neg[1:], []byte{0, 0, 0, 0, 0, 0, 0xF0, 0xBF}) // n is -1
	bad("negative count", neg)
}

// TestSeriesReadsEveryVersion: a series saved by any version of the
// encoding restores, writes back as the current version and goes on
// scoring. testdata/series_v1.bin was written by the version-1 encoding
// (before the per-series report count) from three days of a noisy daily
// cycle with a planted jump; testdata/series_v2.bin by the version-2
// encoding (before the rarity bar's count) from that series and a fourth
// day with a jump it reported. A count an old version did not have
// restores as 0, and re-encoding inserts it (8 zero bytes) after the old
// floats; every other byte is kept.
func TestSeriesReadsEveryVersion(t *testing.T) {
	fixture := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := DefaultSeriesParams()
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	current := func() []byte {
		var s Series
		vals := daily(rand.New(rand.NewPCG(8, 9)), 4*288, 20, 3)
		for i, v := range vals {
			if i >= 3*288+200 {
				v += 80
			}
			s.Observe(&p, t0+int64(i)*300_000, v)
		}
		return s.AppendBinary(nil)
	}
	zero := make([]byte, 8)
	for _, tc := range []struct {
		version byte
		enc     []byte
		points  int
		// reports and rarity say whether the restored counts are positive.
		reports, rarity bool
		// want is the current encoding of the restored series.
		want func(old []byte) []byte
	}{
		{1, fixture("series_v1.bin"), 3 * 288, false, false, func(old []byte) []byte {
			out := append([]byte{SeriesVersion}, old[1:seriesFixedV1]...)
			out = append(out, zero...) // the report count
			out = append(out, zero...) // the rarity bar's count
			return append(out, old[seriesFixedV1:]...)
		}},
		{2, fixture("series_v2.bin"), 4 * 288, true, false, func(old []byte) []byte {
			const fixedV2 = 1 + 8*seriesFloatsV2
			out := append([]byte{SeriesVersion}, old[1:fixedV2]...)
			out = append(out, zero...) // the rarity bar's count
			return append(out, old[fixedV2:]...)
		}},
		{SeriesVersion, current(), 4 * 288, true, true, bytes.Clone},
	} {
		if tc.enc[0] != tc.version {
			t.Fatalf("version %d: encoding starts with %d", tc.version, tc.enc[0])
		}
		var s Series
		if err := s.UnmarshalBinary(tc.enc); err != nil {
			t.Fatalf("version %d: %v", tc.version, err)
		}
		if s.Points() != tc.points || (s.reports > 0) != tc.reports || (s.rarity > 0) != tc.rarity || len(s.lagDay) != 288 {
			t.Fatalf("version %d: restored %d points, %g reports, rarity count %g, %d lagged values; want %d, reports %v, rarity %v, 288",
				tc.version, s.Points(), s.reports, s.rarity, len(s.lagDay), tc.points, tc.reports, tc.rarity)
		}
		if got, want := s.AppendBinary(nil), tc.want(tc.enc); !bytes.Equal(got, want) {
			t.Fatalf("version %d re-encoded: %d bytes, want %d, or contents differ", tc.version, len(got), len(want))
		}
		// It goes on scoring: a day like the others, then a jump that the
		// restored series reports.
		at := t0 + int64(tc.points)*300_000
		vals := daily(rand.New(rand.NewPCG(10, 11)), 288, 20, 3)
		reported := false
		for i, v := range vals {
			if i >= 200 {
				v -= 80
			}
			r := s.Observe(&p, at+int64(i)*300_000, v)
			reported = reported || (i >= 200 && r.Reported >= p.AlertScore)
		}
		if !reported {
			t.Errorf("version %d: the restored series did not report a drop of 80 (noise 3)", tc.version)
		}
	}
}

func FuzzSeriesUnmarshal(f *testing.F) {
	p := DefaultSeriesParams()
	var s Series
	f.Add(s.AppendBinary(nil))
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 3, 100} {
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = 10 + rng.NormFloat64()
		}
		seriesAt(&s, &p, 0, vals)
		f.Add(s.AppendBinary(nil))
	}
	f.Add([]byte{SeriesVersion})
	for _, name := range []string{"series_v1.bin", "series_v2.bin"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Series
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return // rejecting is fine; panicking is not
		}
		enc := s.AppendBinary(nil)
		var again Series
		if err := again.UnmarshalBinary(enc); err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip: %v", err)
		}
		if !bytes.Equal(again.AppendBinary(nil), enc) {
			t.Fatal("re-encoding differs")
		}
		// Whatever was accepted goes on observing without panicking.
		for i := range 3 {
			r := s.Observe(&p, int64(i)*60_000, float64(i))
			if !(r.Score >= 0 && r.Score <= maxScore) {
				t.Fatalf("Score %g out of range", r.Score)
			}
		}
	})
}
