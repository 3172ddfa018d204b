package detect

import (
	"context"
	"slices"
	"sync"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// ReaderSource serves the embedded mode: one generation that owns every
// partition of Topic, read through a plain bus.Reader (membus has one group
// member at a time, so there is never a rebalance). Seek is not supported
// there; the embedded detector starts from the reader's committed offsets
// and recognises re-read records by the checkpoint.
type ReaderSource struct {
	Reader     bus.Reader
	Topic      string
	Partitions []int32

	once sync.Once
}

// Next implements Source: the first call returns the generation, later
// calls wait for ctx.
func (s *ReaderSource) Next(ctx context.Context) (Generation, error) {
	var g Generation
	s.once.Do(func() {
		g = &readerGeneration{src: s, done: make(chan struct{})}
	})
	if g != nil {
		return g, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

type readerGeneration struct {
	src  *ReaderSource
	done chan struct{}
}

func (g *readerGeneration) Partitions() []int32   { return slices.Clone(g.src.Partitions) }
func (g *readerGeneration) Done() <-chan struct{} { return g.done }
func (g *readerGeneration) Fetch(ctx context.Context) (bus.Message, error) {
	return g.src.Reader.Fetch(ctx)
}
func (g *readerGeneration) Seek(int32, int64) error { return nil }
func (g *readerGeneration) Commit(ctx context.Context, next map[int32]int64) error {
	msgs := make([]bus.Message, 0, len(next))
	for p, off := range next {
		if off > 0 {
			msgs = append(msgs, bus.Message{Topic: g.src.Topic, Partition: p, Offset: off - 1})
		}
	}
	return g.src.Reader.Commit(ctx, msgs...)
}
func (g *readerGeneration) Close() error { return nil }
