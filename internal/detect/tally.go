// Package detect is cmd/detector's stage. Today it holds the event
// consumer the detector is built on: it reads canonical events from the
// events topic, decodes and accounts for them per agent and commits. The
// per-agent features, baselines and anomaly scoring of issue 3 plug in here;
// until they do, no anomalies are produced, and the README says so.
package detect

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/bus"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Tally consumes the events topic and counts events per agent. Not safe for
// concurrent Run calls; the caller owns the reader.
type Tally struct {
	Reader bus.Reader
	Log    *slog.Logger
	// CommitEvery commits after this many records (default 1000); the rest
	// is committed when Run ends.
	CommitEvery int

	events, bad prometheus.Counter

	mu       sync.Mutex
	total    uint64
	perAg    map[string]uint64
	unattrib uint64
}

// NewTally builds a Tally with its metrics registered on reg.
func NewTally(r bus.Reader, log *slog.Logger, reg prometheus.Registerer) *Tally {
	f := promauto.With(reg)
	return &Tally{
		Reader: r, Log: log.With("stage", "detector"), perAg: make(map[string]uint64),
		events: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "events_total", Help: "Canonical events consumed."}),
		bad:    f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "undecodable_total", Help: "Records on the events topic that did not decode as canonical events."}),
	}
}

// Run implements pipeline.Stage.
func (t *Tally) Run(ctx context.Context) error {
	every := t.CommitEvery
	if every <= 0 {
		every = 1000
	}
	var dec event.Decoder
	var pending []bus.Message
	commit := func(ctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		if err := t.Reader.Commit(ctx, pending...); err != nil {
			return fmt.Errorf("commit events offsets: %w", err)
		}
		pending = pending[:0]
		return nil
	}
	for {
		m, err := t.Reader.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return commit(context.WithoutCancel(ctx))
			}
			return fmt.Errorf("fetch events: %w", err)
		}
		ev, err := dec.Decode(m.Value)
		t.mu.Lock()
		if err != nil {
			t.bad.Inc()
			t.Log.Warn("undecodable event record", "partition", m.Partition, "offset", m.Offset, "err", err)
		} else {
			t.events.Inc()
			t.total++
			if ev.Unattributed {
				t.unattrib++
			} else {
				t.perAg[ev.AgentID]++
			}
		}
		t.mu.Unlock()
		pending = append(pending, m)
		if len(pending) >= every {
			if err := commit(ctx); err != nil {
				return err
			}
		}
	}
}

// Counts returns the events consumed, the distinct agents seen and the
// unattributed events. Safe for concurrent use.
func (t *Tally) Counts() (events uint64, agents int, unattributed uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, len(t.perAg), t.unattrib
}
