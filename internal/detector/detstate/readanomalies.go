package detstate

import (
	"context"
	"encoding/json"
	"path/filepath"

	"github.com/agentwatch/agentwatch/internal/platform/journal"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// ReadAnomalies returns the anomalies a FileStore keeps in dir, once per
// ID, in file order, without opening the store: it takes no lock and
// changes nothing (journal.Read), so it reads beside a running detector
// (the demo) where OpenFileStore would find the store locked. A missing
// file has none.
func ReadAnomalies(dir string) ([]anomaly.Anomaly, error) {
	var out []anomaly.Anomaly
	seen := map[string]bool{}
	err := journal.Read(filepath.Join(dir, anomaliesFile), journal.Options{}, func(line []byte) error {
		var a anomaly.Anomaly
		if err := json.Unmarshal(line, &a); err != nil {
			return err
		}
		if !seen[a.ID] {
			seen[a.ID] = true
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, damaged(err)
	}
	return out, nil
}

// ScoreReader reads the window scores a FileStore keeps in Dir, as
// FileStore.Scores does, without opening the store (journal.Read, no
// lock), so it reads beside a running detector: the web console's
// observed-versus-baseline plots in the embedded mode. Each call reads
// the file anew.
type ScoreReader struct{ Dir string }

// Scores returns agentID's window scores starting in [fromMs, toMs).
func (r ScoreReader) Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	return scanScores(func(fn func(line []byte) error) error {
		return journal.Read(filepath.Join(r.Dir, scoresFile), journal.Options{}, func(line []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(line)
		})
	}, agentID, fromMs, toMs)
}
