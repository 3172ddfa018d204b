package detect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// FeedbackSource yields the analysts' verdicts on anomalies, written by the
// responder (internal/platform/chstore's Feedback reads them from the ClickHouse
// feedback table). Implementations must be safe for concurrent use.
type FeedbackSource interface {
	// Since returns the verdicts given at or after sinceMs (AtMs, Unix
	// ms), in any order. The detector applies each once, so returning a
	// verdict again is harmless.
	Since(ctx context.Context, sinceMs int64) ([]anomaly.Verdict, error)
}

// ApplyVerdict folds the window of a false-positive verdict into the
// agent's baseline, so that the same behaviour stops looking anomalous,
// and reports whether it changed the agent's state.
//
// A behaviour anomaly's window trained with weight AnomalousWeight (the
// poisoning guard) when it was scored; the fold trains it with the rest,
// 1 − AnomalousWeight, so the window ends up trained exactly once at full
// weight, as if it had been judged normal. Verdicts apply in (AtMs, ID)
// order, each once: the agent's state keeps the last applied verdict's AtMs
// and ID, saved with it, and a verdict not after it returns false. So a
// verdict read again, by the next poll or after a restart or rebalance,
// changes nothing.
//
// A false positive of any kind also takes back what the anomaly added to
// the agent's risk (risk.go), when the risk still remembers it (the
// agent's last few anomalies): the risk is what it would have been
// without it.
//
// It returns false, changing nothing, for a verdict that is not
// VerdictFalsePositive; for an agent no partition of the processor holds
// in memory (another detector owns it, or it was evicted: a later poll
// applies it once the agent is back); and when there is neither a window
// to fold (only a behaviour anomaly with one value per feature has one)
// nor a risk to take back. Rule kinds need no
// baseline change (their rules do not learn from windows), and drift and
// rule windows trained at full weight already. A global_event's agent id
// names no agent. An agent still scored against its peer group during
// warm-up has its own model trained; the peer model is not.
//
// Unlike Add, the result depends on when the verdict arrives relative to
// the partition's records. Not safe for concurrent use (Processor is not);
// the Detector calls it from its loop.
func (p *Processor) ApplyVerdict(v anomaly.Verdict) (applied bool) {
	if v.Verdict != anomaly.VerdictFalsePositive {
		return false
	}
	fold := v.Kind == anomaly.Behaviour && len(v.Values) == int(features.NumFeatures)
	weight := 1 - p.set.Baseline.AnomalousWeight
	var vals features.Vector
	copy(vals[:], v.Values)
	for _, pt := range p.parts {
		a := pt.agents[v.AgentID]
		if a == nil || cmp.Or(cmp.Compare(v.AtMs, a.verdictAt), strings.Compare(v.ID, a.verdictID)) <= 0 {
			continue
		}
		retracted := a.risk != nil && p.set.Risk.On() && a.risk.retract(&p.set.Risk, v.WindowEndMs, v.Kind)
		if !fold && !retracted {
			continue
		}
		if fold && weight > 0 {
			a.model.Update(&p.set.Baseline, v.WindowStartMs, &vals, weight)
		}
		a.verdictAt, a.verdictID = v.AtMs, v.ID
		a.dirty = true
		p.stats.Verdicts++
		applied = true
	}
	return applied
}

// sortVerdicts orders verdicts as ApplyVerdict applies them.
func sortVerdicts(vs []anomaly.Verdict) {
	slices.SortFunc(vs, func(x, y anomaly.Verdict) int {
		return cmp.Or(cmp.Compare(x.AtMs, y.AtMs), strings.Compare(x.ID, y.ID))
	})
}

// verdictReq hands verdicts to the detector's loop, which owns the
// processor, and gets back how many it applied.
type verdictReq struct {
	vs   []anomaly.Verdict
	done chan int
}

// ApplyVerdicts applies verdicts through the running detector's loop (the
// only goroutine that touches Proc; see Processor.ApplyVerdict) in (AtMs,
// ID) order, and returns how many changed an agent's state. It waits while
// no generation is running (partitions being restored after a rebalance)
// and returns ctx's error if ctx ends first. The verdicts are applied to
// in-memory state; they are saved with the next snapshot. Safe for
// concurrent use; vs is not kept.
func (d *Detector) ApplyVerdicts(ctx context.Context, vs []anomaly.Verdict) (int, error) {
	if len(vs) == 0 {
		return 0, nil
	}
	vs = slices.Clone(vs)
	sortVerdicts(vs)
	req := verdictReq{vs: vs, done: make(chan int, 1)}
	select {
	case d.verdictCh() <- req:
	case <-ctx.Done():
		return 0, fmt.Errorf("apply %d verdicts: %w", len(vs), ctx.Err())
	}
	select {
	case n := <-req.done:
		return n, nil
	case <-ctx.Done():
		// The loop has the request and answers into a buffered channel:
		// it may still apply them.
		return 0, fmt.Errorf("apply %d verdicts: %w", len(vs), ctx.Err())
	}
}

func (d *Detector) verdictCh() chan verdictReq {
	d.verdictsOnce.Do(func() { d.verdicts = make(chan verdictReq) })
	return d.verdicts
}

// applyVerdicts runs on the detector's loop.
func (d *Detector) applyVerdicts(req verdictReq) {
	n := 0
	for _, v := range req.vs {
		if d.Proc.ApplyVerdict(v) {
			n++
			d.Log.Info("false-positive verdict folded into baseline", "agent", v.AgentID, "verdict_id", v.ID,
				"anomaly_id", v.AnomalyID, "window_start_ms", v.WindowStartMs, "author", v.Author)
		}
	}
	d.Metrics.VerdictsApplied.Add(float64(n))
	req.done <- n
}

// pollFeedback reads verdicts from d.Feedback every FeedbackPoll and
// applies them, until ctx ends. A failed read is counted, logged and
// retried at the next poll: feedback may wait, detection must not.
func (d *Detector) pollFeedback(ctx context.Context) {
	log := d.Log.With("stage", "feedback")
	log.Info("polling false-positive feedback", "every", d.FeedbackPoll, "lookback", d.FeedbackLookback)
	t := time.NewTicker(d.FeedbackPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		since := time.Now().Add(-d.FeedbackLookback).UnixMilli()
		vs, err := d.Feedback.Since(ctx, since)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.Metrics.FeedbackErrors.Inc()
			log.Warn("read feedback; retrying at the next poll", "err", err)
			continue
		}
		d.Metrics.VerdictsRead.Add(float64(len(vs)))
		if _, err := d.ApplyVerdicts(ctx, vs); err != nil {
			return // ctx ended
		}
	}
}
