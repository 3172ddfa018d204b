package respond

import (
	"context"
	"sync"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// batchWorkers is how many agents' anomalies of one batch are processed at
// once. Each anomaly's processing is a few durable writes (its incident,
// its outbox entries) that wait for an fsync or a produce; the stores
// group-commit writes that overlap, so processing agents side by side
// turns one fsync per write into one per group of writes.
const batchWorkers = 16

// processBatch processes as[i] for every i with todo[i], as process does,
// anomalies of one agent (or of one fleet-wide event: one incident) in
// their order, those of different agents concurrently. It returns the
// results by index and the ids processed without error, in batch order,
// and the first error met; the caller handles the batch again after an
// error, which queues nothing twice.
func (e *Engine) processBatch(ctx context.Context, as []anomaly.Anomaly, todo []bool) ([]HandleResult, []string, error) {
	out := make([]HandleResult, len(as))
	errs := make([]error, len(as))
	done := make([]bool, len(as))
	var order []string
	groups := map[string][]int{}
	for i, a := range as {
		if !todo[i] {
			continue
		}
		k := "agent/" + a.AgentID
		if a.Group != "" {
			k = "group/" + a.Group
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	work := make(chan []int)
	var wg sync.WaitGroup
	for range min(batchWorkers, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range work {
				for _, i := range idx {
					if ctx.Err() != nil {
						errs[i] = ctx.Err()
						break
					}
					r, err := e.process(ctx, as[i])
					if err != nil {
						// Later anomalies of the agent wait for the retry,
						// so they stay in order.
						errs[i] = err
						break
					}
					out[i], done[i] = r, true
				}
			}
		}()
	}
	for _, k := range order {
		work <- groups[k]
	}
	close(work)
	wg.Wait()
	var mark []string
	var first error
	for i, a := range as {
		if errs[i] != nil && first == nil {
			first = errs[i]
		}
		if done[i] {
			mark = append(mark, a.ID)
		}
	}
	return out, mark, first
}
