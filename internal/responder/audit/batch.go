package audit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Batcher is a Store that groups the records of concurrent Appends into
// one Append of the Store it wraps (a group commit): every action of the
// responder is audited before it counts as done, and ClickHouse takes a
// few larger inserts far better than many one-row ones. An Append returns
// once its records are stored, or with the error of the insert that held
// them.
type Batcher struct {
	inner Store
	wait  time.Duration
	gap   time.Duration
	max   int
	reqs  chan batchReq
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

type batchReq struct {
	recs []Record
	err  chan error
}

// NewBatcher wraps inner: an Append waits at most wait for others to join
// it, and one insert holds at most maxRecords records (defaults 10ms and
// 1000). Close stops it.
func NewBatcher(inner Store, wait time.Duration, maxRecords int) *Batcher {
	return NewSpacedBatcher(inner, wait, 0, maxRecords)
}

// NewSpacedBatcher is NewBatcher whose inserts also start at least gap
// apart (unless one fills up to maxRecords): an Append made soon after an
// insert began waits for the gap to end, gathering the others meanwhile.
// Under load that bounds the inserts to one per gap whatever the rate of
// records, since each insert costs the database about the same however
// few rows it holds (a part written, then merged); when records are
// sparse an Append still waits only wait.
func NewSpacedBatcher(inner Store, wait, gap time.Duration, maxRecords int) *Batcher {
	if wait <= 0 {
		wait = 10 * time.Millisecond
	}
	if maxRecords <= 0 {
		maxRecords = 1000
	}
	b := &Batcher{inner: inner, wait: wait, gap: max(gap, 0), max: maxRecords, reqs: make(chan batchReq), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

// ErrBatcherClosed is returned by Append after Close.
var ErrBatcherClosed = errors.New("audit batcher is closed")

// Append implements Store.
func (b *Batcher) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	r := batchReq{recs: recs, err: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-b.stop:
		return ErrBatcherClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.err:
		return err
	case <-ctx.Done():
		// The insert goes on; its outcome is unknown to this caller, as
		// with any Append cut short (appending again is safe).
		return ctx.Err()
	}
}

// Query implements Store.
func (b *Batcher) Query(ctx context.Context, f Filter) ([]Record, error) {
	return b.inner.Query(ctx, f)
}

// Close stops the Batcher after the insert in progress.
func (b *Batcher) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return nil
}

func (b *Batcher) loop() {
	defer close(b.done)
	var lastStart time.Time
	for {
		var first batchReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			return
		}
		reqs := []batchReq{first}
		n := len(first.recs)
		wait := b.wait
		if d := time.Until(lastStart.Add(b.gap)); d > wait {
			wait = d
		}
		timer := time.NewTimer(wait)
	collect:
		for n < b.max {
			select {
			case r := <-b.reqs:
				reqs = append(reqs, r)
				n += len(r.recs)
			case <-timer.C:
				break collect
			case <-b.stop:
				break collect
			}
		}
		timer.Stop()
		all := make([]Record, 0, n)
		for _, r := range reqs {
			all = append(all, r.recs...)
		}
		// The insert must not depend on one caller's context: it holds
		// everyone's records.
		lastStart = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := b.inner.Append(ctx, all...)
		cancel()
		for _, r := range reqs {
			r.err <- err
		}
	}
}
