package baseline

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// The functions in this file return natural logs of upper-tail
// probabilities, so that probabilities far below the smallest float64 still
// order correctly. When the exact tail underflows they fall back to the
// logarithm of the first term of the tail plus a geometric bound on the
// rest, which is accurate to well under one unit of surprise there.

// lnTiny is where a tail probability is treated as underflowed and the log
// approximation takes over.
const lnTiny = -680.0

// lnPoissonTail returns ln P(X >= k) for X ~ Poisson(mu), k an integer.
func lnPoissonTail(k, mu float64) float64 {
	if k <= 0 {
		return 0
	}
	if mu <= 0 {
		return math.Inf(-1)
	}
	// P(X >= k) = P(k, mu), the regularised lower incomplete gamma.
	if p := mathext.GammaIncReg(k, mu); p > 0 {
		if lp := math.Log(p); lp > lnTiny {
			return math.Min(lp, 0)
		}
	}
	lg, _ := math.Lgamma(k + 1)
	lnPmf := k*math.Log(mu) - mu - lg
	if q := mu / (k + 1); q < 1 {
		return lnPmf - math.Log1p(-q)
	}
	return lnPmf
}

// lnNegBinTail returns ln P(X >= k) for a negative binomial X with mean m
// and variance phi*m, phi > 1 (a Poisson whose rate is gamma distributed).
func lnNegBinTail(k, m, phi float64) float64 {
	if phi <= 1.0001 {
		return lnPoissonTail(k, m)
	}
	if k <= 0 {
		return 0
	}
	if m <= 0 {
		return math.Inf(-1)
	}
	p := 1 / phi       // success probability
	r := m / (phi - 1) // size
	q := 1 - p         // failure probability, in (0, 1)
	// P(X >= k) = I_{1-p}(k, r).
	if v := mathext.RegIncBeta(k, r, q); v > 0 {
		if lp := math.Log(v); lp > lnTiny {
			return math.Min(lp, 0)
		}
	}
	lgkr, _ := math.Lgamma(k + r)
	lgk, _ := math.Lgamma(k + 1)
	lgr, _ := math.Lgamma(r)
	lnPmf := lgkr - lgk - lgr + r*math.Log(p) + k*math.Log(q)
	if ratio := (k + r) / (k + 1) * q; ratio < 1 {
		return lnPmf - math.Log1p(-ratio)
	}
	return lnPmf
}

// lnBinomTail returns ln P(X >= k) for X ~ Binomial(n, p), 0 < p < 1.
func lnBinomTail(k, n, p float64) float64 {
	if k <= 0 {
		return 0
	}
	if k > n {
		return math.Inf(-1)
	}
	// P(X >= k) = I_p(k, n-k+1).
	if v := mathext.RegIncBeta(k, n-k+1, p); v > 0 {
		if lp := math.Log(v); lp > lnTiny {
			return math.Min(lp, 0)
		}
	}
	lgn, _ := math.Lgamma(n + 1)
	lgk, _ := math.Lgamma(k + 1)
	lgnk, _ := math.Lgamma(n - k + 1)
	lnPmf := lgn - lgk - lgnk + k*math.Log(p) + (n-k)*math.Log1p(-p)
	if ratio := (n - k) / (k + 1) * p / (1 - p); ratio < 1 {
		return lnPmf - math.Log1p(-ratio)
	}
	return lnPmf
}

// lnNormalTail returns ln P(Z >= z) for a standard normal Z.
func lnNormalTail(z float64) float64 {
	if z < 30 {
		return math.Min(math.Log(0.5*math.Erfc(z/math.Sqrt2)), 0)
	}
	// Mills ratio: P(Z >= z) ≈ φ(z)/z · (1 - 1/z²).
	return -z*z/2 - math.Log(z) - 0.5*math.Log(2*math.Pi) + math.Log1p(-1/(z*z))
}

// lnChiSquareTail2k returns ln P(X >= 2x) for X chi-square with 2k degrees
// of freedom, k >= 1: the Fisher combination of k p-values whose surprises
// (-ln p) sum to x. For even degrees of freedom the tail has the closed form
// e^-x · Σ_{j<k} x^j/j!, summed here in logs.
func lnChiSquareTail2k(x float64, k int) float64 {
	if x <= 0 || k <= 0 {
		return 0
	}
	lx := math.Log(x)
	// Terms grow while j < x, so the last one is the largest when x >= k.
	t, maxT := 0.0, 0.0
	for j := 1; j < k; j++ {
		t += lx - math.Log(float64(j))
		maxT = math.Max(maxT, t)
	}
	sum := 0.0
	t = 0
	for j := 0; j < k; j++ {
		if j > 0 {
			t += lx - math.Log(float64(j))
		}
		sum += math.Exp(t - maxT)
	}
	return math.Min(-x+maxT+math.Log(sum), 0)
}
