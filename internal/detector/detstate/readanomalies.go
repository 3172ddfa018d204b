package detstate

import (
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
