package baseline

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// lnSumExp returns ln Σ exp(t) over ts.
func lnSumExp(ts []float64) float64 {
	mx := math.Inf(-1)
	for _, t := range ts {
		mx = math.Max(mx, t)
	}
	s := 0.0
	for _, t := range ts {
		s += math.Exp(t - mx)
	}
	return mx + math.Log(s)
}

// bruteTail returns ln Σ_{j>=k} pmf(j) by summing lnPmf far past k.
func bruteTail(k float64, lnPmf func(j float64) float64, upTo float64) float64 {
	var ts []float64
	for j := k; j <= upTo; j++ {
		ts = append(ts, lnPmf(j))
	}
	return lnSumExp(ts)
}

func TestPoissonTail(t *testing.T) {
	for _, c := range []struct{ mu, k float64 }{
		{0.05, 1}, {0.05, 3}, {0.05, 20}, {1, 1}, {1, 4}, {3, 0}, {3, 2}, {3, 10},
		{20, 10}, {20, 20}, {20, 35}, {20, 60}, {20, 200}, {60, 600}, {500, 550}, {500, 2000},
		{1e4, 1.1e4}, {2, 400},
	} {
		got := lnPoissonTail(c.k, c.mu)
		d := distuv.Poisson{Lambda: c.mu}
		want := 0.0
		if c.k > 0 {
			want = bruteTail(c.k, d.LogProb, c.k+20*math.Sqrt(c.mu)+200)
		}
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) && !(want < lnTiny && math.Abs(got-want) < 0.05) {
			t.Errorf("lnPoissonTail(k=%g, mu=%g) = %g, want %g (brute-force sum of gonum pmf)", c.k, c.mu, got, want)
		}
		// Where gonum's survival is accurate, it agrees too.
		if s := d.Survival(c.k - 1); c.k > 0 && s > 1e-9 {
			if rel := math.Abs(math.Exp(got)-s) / s; rel > 1e-6 {
				t.Errorf("Poisson(%g) P(X>=%g) = %g, gonum Survival says %g", c.mu, c.k, math.Exp(got), s)
			}
		}
	}
}

func TestNegBinTail(t *testing.T) {
	for _, c := range []struct{ mean, variance, k float64 }{
		{0.05, 0.5, 1}, {0.05, 0.5, 5}, {0.05, 5, 3}, {1, 2, 1}, {1, 2, 6}, {3, 9, 0}, {3, 9, 10},
		{20, 40, 20}, {20, 40, 60}, {20, 400, 100}, {20, 40, 400}, {60, 120, 2000},
		{500, 1000, 700}, {20, 20.001, 30},
	} {
		phi := c.variance / c.mean
		got := lnNegBinTail(c.k, c.mean, phi)
		p := 1 / phi
		r := c.mean / (phi - 1)
		lnPmf := func(j float64) float64 {
			a, _ := math.Lgamma(j + r)
			b, _ := math.Lgamma(j + 1)
			g, _ := math.Lgamma(r)
			return a - b - g + r*math.Log(p) + j*math.Log1p(-p)
		}
		want := 0.0
		if c.k > 0 {
			want = bruteTail(c.k, lnPmf, c.k+60*math.Sqrt(c.variance)+2000)
		}
		if phi < 1.0001 { // treated as Poisson
			want = bruteTail(c.k, distuv.Poisson{Lambda: c.mean}.LogProb, c.k+500)
		}
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) && !(want < lnTiny && math.Abs(got-want) < 0.05) {
			t.Errorf("lnNegBinTail(k=%g, mean=%g, var=%g) = %g, want %g (brute-force pmf sum)", c.k, c.mean, c.variance, got, want)
		}
	}
}

func TestBinomTail(t *testing.T) {
	for _, c := range []struct{ k, n, p float64 }{
		{1, 1, 0.001}, {1, 20, 0.001}, {3, 20, 0.001}, {5, 20, 0.001}, {30, 30, 0.001},
		{2, 50, 0.03}, {10, 50, 0.03}, {500, 1000, 0.01}, {1000, 1000, 0.001}, {3, 10, 0.5},
	} {
		got := lnBinomTail(c.k, c.n, c.p)
		d := distuv.Binomial{N: c.n, P: c.p}
		want := bruteTail(c.k, d.LogProb, c.n)
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) && !(want < lnTiny && math.Abs(got-want) < 0.05) {
			t.Errorf("lnBinomTail(k=%g, n=%g, p=%g) = %g, want %g", c.k, c.n, c.p, got, want)
		}
	}
}

func TestNormalTail(t *testing.T) {
	for _, z := range []float64{-3, 0, 1, 3, 8, 20, 29.9, 30, 31, 60, 200} {
		got := lnNormalTail(z)
		var want float64
		if z < 5 { // gonum's Survival is 1-CDF, inaccurate further out
			want = math.Log(distuv.UnitNormal.Survival(z))
		} else { // asymptotic series with more terms
			want = -z*z/2 - math.Log(z) - 0.5*math.Log(2*math.Pi) + math.Log(1-1/(z*z)+3/math.Pow(z, 4)-15/math.Pow(z, 6)+105/math.Pow(z, 8))
		}
		if math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Errorf("lnNormalTail(%g) = %g, want %g", z, got, want)
		}
	}
}

func TestChiSquareTail(t *testing.T) {
	for _, c := range []struct {
		x float64
		k int
	}{
		{0, 3}, {0.5, 1}, {1, 1}, {5, 1}, {5, 16}, {16, 16}, {30, 16}, {100, 16}, {100, 3}, {400, 16}, {2000, 16},
	} {
		got := lnChiSquareTail2k(c.x, c.k)
		s := distuv.ChiSquared{K: float64(2 * c.k)}.Survival(2 * c.x)
		if s > 1e-290 {
			if math.Abs(got-math.Log(s)) > 1e-8*math.Max(1, math.Abs(math.Log(s))) {
				t.Errorf("lnChiSquareTail2k(%g, %d) = %g, gonum ChiSquared Survival gives ln %g", c.x, c.k, got, math.Log(s))
			}
			continue
		}
		// Beyond float64: the leading term of the closed form dominates.
		lg, _ := math.Lgamma(float64(c.k))
		want := -c.x + float64(c.k-1)*math.Log(c.x) - lg
		if math.Abs(got-want) > 0.1 {
			t.Errorf("lnChiSquareTail2k(%g, %d) = %g, want about %g", c.x, c.k, got, want)
		}
	}
}
