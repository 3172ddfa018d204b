package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// StreamOptions says how Stream paces and records the lines.
type StreamOptions struct {
	// Rate is lines per second; 0 writes as fast as the writer takes them.
	Rate float64
	// Ledger, when not nil, receives each line's ground truth as a JSON line.
	Ledger io.Writer
	// Progress, when not nil, receives a progress line every 5 s and a summary.
	Progress io.Writer
}

// Stream writes every line of s to w, one per line, until s is done or
// ctx is cancelled (which is not an error: the stream just stops).
func Stream(ctx context.Context, s *Simulator, w io.Writer, o StreamOptions) error {
	out := bufio.NewWriterSize(w, 1<<20)
	var lw *bufio.Writer
	if o.Ledger != nil {
		lw = bufio.NewWriter(o.Ledger)
	}
	flush := func() error {
		if lw != nil {
			if err := lw.Flush(); err != nil {
				return fmt.Errorf("write ledger: %w", err)
			}
		}
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write lines: %w", err)
		}
		return nil
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format, a...)
		}
	}
	began := time.Now()
	var n, bad int
	lastReport := began
	for {
		line, ok := s.Next()
		if !ok {
			break
		}
		if o.Rate > 0 {
			due := began.Add(time.Duration(float64(n) / o.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := flush(); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		} else if ctx.Err() != nil {
			return flush()
		}
		out.Write(line.Raw)
		if err := out.WriteByte('\n'); err != nil {
			return fmt.Errorf("write lines: %w", err)
		}
		if lw != nil {
			rec, _ := json.Marshal(struct {
				N        int    `json:"n"`
				Good     bool   `json:"good"`
				Format   string `json:"format"`
				Reason   string `json:"reason,omitempty"`
				Agent    string `json:"agent,omitempty"`
				Incident string `json:"incident,omitempty"`
			}{n, line.Good, line.Format, line.Reason, line.Event.AgentID, line.Incident})
			lw.Write(rec)
			lw.WriteByte('\n')
		}
		n++
		if !line.Good {
			bad++
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			progress("simulate: %d lines (%d bad), simulated clock %s, %.0f lines/s\n", n, bad, s.Clock().Format(time.RFC3339), float64(n)/time.Since(began).Seconds())
		}
	}
	if err := flush(); err != nil {
		return err
	}
	progress("simulate: done, %d lines (%d bad) in %s\n", n, bad, time.Since(began).Round(time.Millisecond))
	return nil
}

// WriteFiles writes the simulator's injected incidents (JSON), agent
// registry (YAML) and route inventory (OpenAPI 3) to the paths given; an
// empty path skips that file.
func WriteFiles(s *Simulator, incidents, registry, routes string) error {
	write := func(path string, fn func(f *os.File) error) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		return errors.Join(fn(f), f.Close())
	}
	return errors.Join(
		write(incidents, func(f *os.File) error {
			enc := json.NewEncoder(f)
			enc.SetIndent("", "  ")
			return enc.Encode(s.Incidents())
		}),
		write(registry, func(f *os.File) error { return WriteRegistryYAML(f, s.Registry()) }),
		write(routes, func(f *os.File) error { return WriteOpenAPI(f, s.Routes()) }),
	)
}
