package chresp

import (
	"context"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// ScoreReader reads the window scores the detector writes (the
// window_scores table of migration 0002, chstore.Store.InsertScores), for
// evidence bundles and the feedback loop's verdicts. Safe for concurrent
// use; it does not own the Store.
type ScoreReader struct {
	st *chstore.Store
}

// NewScoreReader returns the score reader of st's database.
func NewScoreReader(st *chstore.Store) *ScoreReader { return &ScoreReader{st: st} }

// Scores returns the window scores of agentID ("" for every agent) with
// fromMs <= WindowStartMs < toMs, once per window (a re-scored window's
// latest score), ordered by WindowStartMs then agent. Values, Expected and
// Surprise are empty, not nil, when the detector stored none. It is
// chstore.Store.Scores, which owns the table's reads.
func (r *ScoreReader) Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	return r.st.Scores(ctx, agentID, fromMs, toMs)
}
