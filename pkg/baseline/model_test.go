package baseline

import (
	"testing"
)

func TestFalsePositiveRate(t *testing.T) {
	p := DefaultParams()
	for _, c := range []struct {
		name  string
		level float64
		cycle func(int) float64
	}{
		{"flat busy", 20, nil},
		{"office hours", 20, officeCycle},
		{"sparse", 0.8, officeCycle},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newSim(42, c.level, c.cycle)
			var m Model
			t0, _, _ := a.train(t, &m, &p, simStart, 14*24*60) // two weeks of training
			worst := Result{}
			n, flagged := 0, 0
			tt := t0
			for n < 100_000 && tt < t0+365*dayMs {
				v, ok := a.window(tt, 1)
				if ok {
					n++
					r := step(&m, &p, tt, &v)
					if r.Anomalous || r.Drift {
						flagged++
						if r.Score > worst.Score {
							worst = r
						}
					}
				}
				tt += minuteMs
			}
			rate := float64(flagged) / float64(n)
			t.Logf("%d of %d normal windows flagged (rate %.2g); worst score %.1f top %v", flagged, n, rate, worst.Score, worst.Top(3))
			if rate > 1e-4 {
				t.Errorf("false-positive rate %.2g over %d normal windows, want <= 1e-4", rate, n)
			}
		})
	}
}
