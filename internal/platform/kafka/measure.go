package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// measureCommitEvery is how many records MeasureConsume reads between
// commits: frequent enough to include commit cost as a real consumer would
// pay it, rare enough that the round trips do not dominate.
const measureCommitEvery = 5000

// MeasureConsume reads n records from cfg.Topics as a new consumer group
// and reports how long that took, committing every few thousand records
// like a real consumer. The group id is cfg.GroupID (default "measure")
// with a random suffix, so every call starts from StartOffset (default
// "first") instead of a previous run's commits; the group is left behind
// and expires with the broker's offsets.retention.minutes.
//
// The clock starts when the first record arrives and stops when the last
// commit is acknowledged, so the group join and the first fetch's offset
// lookup are not counted: n/duration is the steady consume rate. The
// topics must already hold at least n records, or the call waits until
// ctx ends and returns its error.
func MeasureConsume(ctx context.Context, cfg ReaderConfig, n int) (time.Duration, error) {
	if n <= 0 {
		return 0, fmt.Errorf("measure consume: n must be positive, got %d", n)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails (Go 1.24+)
	if cfg.GroupID == "" {
		cfg.GroupID = "measure"
	}
	cfg.GroupID += "-" + hex.EncodeToString(suffix[:])
	r, err := NewReader(cfg, nil)
	if err != nil {
		return 0, fmt.Errorf("measure consume: %w", err)
	}

	var start time.Time
	d, err := func() (time.Duration, error) {
		// Only the last record of each partition matters to a commit, but
		// bus.Reader takes records, so keep one per partition since the
		// previous commit.
		pending := make(map[partKey]bus.Message)
		commit := func() error {
			if len(pending) == 0 {
				return nil
			}
			msgs := make([]bus.Message, 0, len(pending))
			for _, m := range pending {
				msgs = append(msgs, m)
			}
			clear(pending)
			return r.Commit(ctx, msgs...)
		}
		for i := 0; i < n; i++ {
			m, err := r.Fetch(ctx)
			if err != nil {
				return 0, fmt.Errorf("after %d of %d records: %w", i, n, err)
			}
			if i == 0 {
				start = time.Now()
			}
			pending[partKey{m.Topic, m.Partition}] = m
			if (i+1)%measureCommitEvery == 0 {
				if err := commit(); err != nil {
					return 0, err
				}
			}
		}
		if err := commit(); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}()
	cerr := r.Close()
	if err != nil {
		return 0, fmt.Errorf("measure consume: %w", errors.Join(err, cerr))
	}
	if cerr != nil {
		return 0, fmt.Errorf("measure consume: %w", cerr)
	}
	return d, nil
}

type partKey struct {
	topic     string
	partition int32
}
