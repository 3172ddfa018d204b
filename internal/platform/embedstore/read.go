package embedstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// Read calls fn with each event stored in dir whose event time is in
// [from, to), day file by day file, oldest day first, until fn returns
// false. Unlike Open it loads no ids and creates nothing, and it skips a
// last line without its newline (an append in progress): it is for a
// reader beside the process that writes the store (the visibility
// commands beside the demo). day is the file's day, YYYYMMDD. A missing
// dir has no events.
func Read(dir string, from, to time.Time, fn func(day string, e *event.Event) bool) error {
	s := &Store{dir: dir}
	days, err := s.Days()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lo, hi := from.UTC().Format("20060102"), to.UTC().Format("20060102")
	for _, day := range days {
		if day < lo || day > hi {
			continue
		}
		stop, err := readDay(filepath.Join(dir, filePrefix+day+fileSuffix), func(e *event.Event) bool {
			if e.EventTimeMs < from.UnixMilli() || e.EventTimeMs >= to.UnixMilli() {
				return true
			}
			return fn(day, e)
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// readDay decodes one day file's complete lines; stop says fn asked to
// stop.
func readDay(name string, fn func(*event.Event) bool) (stop bool, err error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // dropped by retention since the listing
	}
	if err != nil {
		return false, fmt.Errorf("embedstore: open %s: %w", name, err)
	}
	defer f.Close()
	var dec event.Decoder
	r := bufio.NewReaderSize(f, 64<<10)
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it whole.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if errors.Is(err, io.EOF) {
			return false, nil // none left, or a line still being appended
		}
		if err != nil {
			return false, fmt.Errorf("embedstore: read %s: %w", name, err)
		}
		b = bytes.TrimSuffix(b, []byte{'\n'})
		if len(b) == 0 {
			continue
		}
		e, err := dec.Decode(b)
		if err != nil {
			return false, fmt.Errorf("embedstore: %s line %d: %w", name, line, err)
		}
		if !fn(&e) {
			return true, nil
		}
	}
}
