package baseline

import (
	"bytes"
	"encoding/binary"
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

// TestSeriesReadsVersion1: testdata/series_v1.bin was written by the
// version-1 encoding (before the per-series report count), from three days
// of a noisy daily cycle with a planted jump. It still restores, with no
// recent reports, and writes back as version 2: the same bytes with the
// version byte changed and the report count (0) after the version-1 floats.
func TestSeriesReadsVersion1(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("testdata", "series_v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if v1[0] != 1 {
		t.Fatalf("fixture version %d, want 1", v1[0])
	}
	var s Series
	if err := s.UnmarshalBinary(v1); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	if s.Points() != 3*288 || s.reports != 0 || len(s.lagDay) != 288 {
		t.Fatalf("restored %d points, %g reports, %d lagged values; want 864, 0, 288", s.Points(), s.reports, len(s.lagDay))
	}
	want := append([]byte{SeriesVersion}, v1[1:seriesFixedV1]...)
	want = binary.LittleEndian.AppendUint64(want, 0)
	want = append(want, v1[seriesFixedV1:]...)
	if got := s.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatalf("re-encoded as version 2: %d bytes, want %d, or contents differ", len(got), len(want))
	}
	// It goes on scoring: a fourth day like the others, then a jump that
	// the restored series reports.
	p := DefaultSeriesParams()
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli() + 3*288*300_000
	vals := daily(rand.New(rand.NewPCG(8, 9)), 288, 20, 3)
	reported := false
	for i, v := range vals {
		if i >= 200 {
			v += 80
		}
		r := s.Observe(&p, t0+int64(i)*300_000, v)
		reported = reported || (i >= 200 && r.Reported >= p.AlertScore)
	}
	if !reported {
		t.Fatal("a version-1 series restored did not report a jump of 80 (noise 3)")
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
	if v1, err := os.ReadFile(filepath.Join("testdata", "series_v1.bin")); err == nil {
		f.Add(v1)
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
