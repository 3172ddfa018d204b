package respsvc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// SharedState is the distributed mode's per-partition state of every
// partition, read once from kafka.responder_state_topic: what `responder
// incidents` and `responder outbox list` show there. It is a copy; the
// owners go on changing the topic.
type SharedState struct {
	Incidents []respond.Incident
	Outbox    []outbox.Entry
}

// ReadSharedState reads every partition of kafka.responder_state_topic to
// its end. log may be nil.
func ReadSharedState(ctx context.Context, cfg config.Config, log *slog.Logger) (SharedState, error) {
	sec, err := kafka.Connect(ctx, cfg.Kafka, log)
	if err != nil {
		return SharedState{}, err
	}
	cl, err := kstate.OpenChangelog(ctx, kstate.Config{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: cfg.Kafka.ResponderStateTopic, Log: log})
	if err != nil {
		return SharedState{}, fmt.Errorf("kafka.responder_state_topic: %w", err)
	}
	defer cl.Close()
	ob := outbox.NewPartStore(cl, outbox.PartOptions{Log: log})
	incs, inc := respond.NewIncidentReader(cl)
	owner := partstate.NewOwner(cl, log, ob, inc)
	all := make([]int32, cl.Partitions())
	for i := range all {
		all[i] = int32(i)
	}
	if err := owner.Assign(ctx, all); err != nil {
		return SharedState{}, err
	}
	entries, err := ob.List(ctx)
	if err != nil {
		return SharedState{}, err
	}
	return SharedState{Incidents: incs(), Outbox: entries}, nil
}
