package baseline

// One severity scale serves every anomaly, statistical or rule: a score is
// a position on it and its severity is always Grade of that score. For a
// behaviour or drift window the score is the evidence itself (-log10 of the
// combined p). A rule knows how serious what it saw is before it knows how
// improbable it is, so it places itself in the band of that severity
// (BandScore) and, where it has a p-value, orders its findings inside the
// band by their evidence (EvidenceScore). Bands are taken from the Params'
// thresholds, so a rule's severity agrees with its score whatever
// detector.alert_score is.

// Grade returns the severity of score on p's scale: None below AlertScore,
// Low from AlertScore, then Medium, High and Critical from MediumScore,
// HighScore and CriticalScore. Where two thresholds are equal the higher
// severity wins. A NaN score is None.
func (p *Params) Grade(score float64) Severity {
	switch {
	case !(score >= p.AlertScore):
		return None
	case score >= p.CriticalScore:
		return Critical
	case score >= p.HighScore:
		return High
	case score >= p.MediumScore:
		return Medium
	}
	return Low
}

// Band returns the scores [lo, hi) that grade as s on p's scale; the
// Critical band ends at the highest score, 300. None's band is [0,
// AlertScore).
func (p *Params) Band(s Severity) (lo, hi float64) {
	switch s {
	case Low:
		return p.AlertScore, p.MediumScore
	case Medium:
		return p.MediumScore, p.HighScore
	case High:
		return p.HighScore, p.CriticalScore
	case Critical:
		return p.CriticalScore, maxScore
	}
	return 0, p.AlertScore
}

// BandScore returns the score at fraction frac of severity s's band: 0 is
// its lowest score, and frac is clamped to [0, 0.99] so that the score
// stays inside the band (Grade gives s back, unless s's band is empty
// because thresholds coincide). Rules use it to say how serious a kind
// of finding is; a larger frac ranks a finding above others of its
// severity.
func (p *Params) BandScore(s Severity, frac float64) float64 {
	lo, hi := p.Band(s)
	frac = min(max(frac, 0), 0.99)
	if frac != frac { // NaN
		frac = 0
	}
	return lo + frac*max(hi-lo, 0)
}

// EvidenceScore places evidence, a -log10 p at or above floor (the score
// at which its rule fires), inside severity s's band: evidence at floor
// lands on the band's lowest score, and stronger evidence climbs towards
// its top without reaching it (fraction 1 - floor/evidence, capped by
// BandScore). So a rule with a p-value keeps its findings in order of
// evidence and its severity whatever the evidence.
func (p *Params) EvidenceScore(s Severity, evidence, floor float64) float64 {
	if !(evidence > floor) || !(floor > 0) {
		return p.BandScore(s, 0)
	}
	return p.BandScore(s, 1-floor/evidence)
}

// ParseSeverity returns the Severity whose String is name, and false for
// any other name.
func ParseSeverity(name string) (Severity, bool) {
	for s := None; s <= Critical; s++ {
		if s.String() == name {
			return s, true
		}
	}
	return None, false
}
