package baseline

import (
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

func benchWindow(b *testing.B) (*Model, *Params, features.Vector) {
	m, p := sample(b)
	v, _ := newSim(9, 10, officeCycle).window(simStart+12*hourMs, 1)
	return m, p, v
}

func BenchmarkScore(b *testing.B) {
	m, p, v := benchWindow(b)
	b.ReportAllocs()
	for b.Loop() {
		r := m.Score(p, simStart+12*hourMs, &v)
		_ = r
	}
}

func BenchmarkUpdate(b *testing.B) {
	m, p, v := benchWindow(b)
	b.ReportAllocs()
	for b.Loop() {
		m.Update(p, simStart+12*hourMs, &v, 1)
	}
}

// BenchmarkAccumulate is the sequential tests' cost per active window: an
// agent active every minute (so each window also walks no idle gap) at
// its usual rate, tests on.
func BenchmarkAccumulate(b *testing.B) {
	m, p, v := benchWindow(b)
	t := simStart + 12*hourMs
	b.ReportAllocs()
	for b.Loop() {
		m.Accumulate(p, t, minuteMs, &v, true, 1, 1)
		t += minuteMs
	}
}

func TestZeroAllocs(t *testing.T) {
	m, p := sample(t)
	v, _ := newSim(9, 10, officeCycle).window(simStart+12*hourMs, 1)
	if n := testing.AllocsPerRun(100, func() { _ = m.Score(p, simStart, &v) }); n != 0 {
		t.Errorf("Score allocates %g times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { m.Update(p, simStart, &v, 1) }); n != 0 {
		t.Errorf("Update allocates %g times per call", n)
	}
	tm := simStart
	if n := testing.AllocsPerRun(100, func() { m.Accumulate(p, tm, minuteMs, &v, true, 1, 1); tm += 7 * minuteMs }); n != 0 {
		t.Errorf("Accumulate allocates %g times per call", n)
	}
}
