package respond

import (
	"context"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// EmbeddedEvents is the embedded store as an evidence.EventSource: the
// demo's and the file mode's snapshots read it.
type EmbeddedEvents struct{ Store *embedstore.Store }

// Events implements evidence.EventSource.
func (s EmbeddedEvents) Events(ctx context.Context, agentID string, fromMs, toMs int64, fn func(*event.Event) error) error {
	var ferr error
	err := s.Store.Events(agentID, time.UnixMilli(fromMs), time.UnixMilli(toMs), func(e *event.Event) bool {
		if ctx.Err() != nil {
			ferr = ctx.Err()
			return false
		}
		if err := fn(e); err != nil {
			ferr = err
			return false
		}
		return true
	})
	if ferr != nil {
		return ferr
	}
	return err
}
