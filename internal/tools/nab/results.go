package nab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// WriteResults writes a detector's scores for s to dir/<category>/<file>.csv
// (s.Name under dir) with the columns timestamp,value,anomaly_score: the
// columns NAB's results files start with, so the scores can be checked by
// hand or against NAB's scorer. (NAB itself keeps them under
// results/<detector>/<category>/<detector>_<file>.csv, with a label column.)
// Timestamps are written as in NAB's data files and numbers in the fewest
// digits that read back exactly. It creates missing directories and replaces
// an existing file. Calls for different series may run concurrently.
func WriteResults(dir string, s Series, scores []float64) (err error) {
	if len(scores) != len(s.Values) || len(s.Times) != len(s.Values) {
		return fmt.Errorf("write results for %s: %d scores for %d rows", s.Name, len(scores), len(s.Values))
	}
	rel := filepath.FromSlash(s.Name)
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("write results for %q: name must be a relative path like \"realKnownCause/nyc_taxi.csv\"", s.Name)
	}
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results for %s: %w", s.Name, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write results for %s: %w", s.Name, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write results %s: %w", path, cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	w.WriteString("timestamp,value,anomaly_score\n")
	var line []byte
	for i, t := range s.Times {
		line = append(line[:0], formatTime(t)...)
		line = append(line, ',')
		line = append(line, formatValue(s.Values[i])...)
		line = append(line, ',')
		line = append(line, formatValue(scores[i])...)
		line = append(line, '\n')
		w.Write(line) // a write error sticks and Flush reports it
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write results %s: %w", path, err)
	}
	return nil
}

// formatValue writes v in the fewest digits that read back as v.
func formatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}
