package detect

import (
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// rulePlace is where a rule's finding sits on the one severity scale
// (baseline.Params.Grade): its severity band and how far up the band. The
// order says how serious each finding is next to the others, which the
// statistics cannot say: a refused call outside the agent's role is a
// policy problem (medium); the same call answered 2xx means data or an
// action reached an agent that must not have it (high).
type rulePlace struct {
	sev  baseline.Severity
	frac float64
}

var (
	placeZombie         = rulePlace{baseline.Medium, 0.1}
	placeUnapprovedDeny = rulePlace{baseline.Medium, 0.3}
	placeNewSourceIP    = rulePlace{baseline.Medium, 0.5}
	placeSensitiveDeny  = rulePlace{baseline.Medium, 0.6}
	placeShadow         = rulePlace{baseline.High, 0.2}
	placeUnapprovedOK   = rulePlace{baseline.High, 0.3}
	placeFlood          = rulePlace{baseline.High, 0.5}
	placeSensitiveOK    = rulePlace{baseline.High, 0.6}
	placeOffHoursBand   = baseline.Medium
	placeFleetGaugeBand = baseline.Medium
)

// place sets an's score to p's place on the configured scale and its
// severity to the grade of that score.
func (pr *Processor) place(an *anomaly.Anomaly, p rulePlace) {
	pr.setScore(an, pr.set.Baseline.BandScore(p.sev, p.frac))
}

// placeEvidence sets an's score from evidence (-log10 p, at least floor,
// the rule's own threshold) inside band sev, and its severity from it.
func (pr *Processor) placeEvidence(an *anomaly.Anomaly, sev baseline.Severity, evidence, floor float64) {
	pr.setScore(an, pr.set.Baseline.EvidenceScore(sev, evidence, floor))
}

// setScore is the one place a rule anomaly's score and severity are set:
// the severity is always the grade of the (rounded) score.
func (pr *Processor) setScore(an *anomaly.Anomaly, score float64) {
	an.Score = round(score)
	an.Severity = pr.grade(an.Score)
}

// grade is the severity name of score on the configured scale; an
// anomaly is never graded below low.
func (pr *Processor) grade(score float64) string {
	return max(pr.set.Baseline.Grade(score), baseline.Low).String()
}

// anyOK reports whether any of the calls was answered 2xx.
func anyOK(rs []features.RouteCalls) bool {
	for _, r := range rs {
		if r.OK > 0 {
			return true
		}
	}
	return false
}
