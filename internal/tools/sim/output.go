package sim

import (
	"bufio"
	"fmt"
	"io"
	"iter"
)

// All returns the remaining lines as an iterator, for range loops; it
// consumes the Simulator like Next does.
func (s *Simulator) All() iter.Seq[Line] {
	return func(yield func(Line) bool) {
		for {
			l, ok := s.Next()
			if !ok || !yield(l) {
				return
			}
		}
	}
}

// WriteTo writes every remaining line to w, one per line (what `kcat -P`
// reads), and returns the bytes written. No line contains a newline itself:
// every format escapes control bytes. It implements io.WriterTo.
func (s *Simulator) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var n int64
	for l := range s.All() {
		k, err := bw.Write(l.Raw)
		n += int64(k)
		if err == nil {
			err = bw.WriteByte('\n')
			n++
		}
		if err != nil {
			return n, fmt.Errorf("write simulated lines: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write simulated lines: %w", err)
	}
	return n, nil
}
