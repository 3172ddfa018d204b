package respsvc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

// Global is the distributed mode's global table (kafka.responder_global_topic)
// and the rules kept in it. Close closes the table.
type Global struct {
	Rules *global.Rules
	Table *kstate.Table
}

// Close stops following the table and releases its connections.
func (g *Global) Close() error {
	if g == nil || g.Table == nil {
		return nil
	}
	return g.Table.Close()
}

// OpenGlobal opens cfg's global table, creating its topic first when
// kafka.create_topics, with the rules registered on mux (nil: a Mux of
// their own; pass one to carry other prefixes on the same table), and
// returns once the table was read to its end: the silences, the kill
// switch, the budget and the ledger are then those of every instance.
// reg and sm (the state topics' metrics, shared with the changelog) may be
// nil. fence, when set, is asked before every write (see kstate.Config).
// prod, when set, carries the table's writes in the produce requests it
// shares with the instance's state changelog; the caller closes it after
// the result. The caller closes the result.
func OpenGlobal(ctx context.Context, cfg config.Config, sec kafka.Security, log *slog.Logger, reg prometheus.Registerer, sm *kstate.Metrics, mux *kstate.Mux, fence func() error, prod *kstate.Producer) (*Global, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	rc := cfg.Responder
	topic := cfg.Kafka.ResponderGlobalTopic
	if cfg.Kafka.CreateTopics {
		spec := kstate.Spec(topic, 1)
		spec.ReplicationFactor = cfg.Kafka.ReplicationFactor
		if err := kafka.EnsureTopics(ctx, cfg.Kafka.Brokers, sec, spec); err != nil {
			return nil, fmt.Errorf("ensure the responder's global topic: %w", err)
		}
	}
	o := global.Options{Budget: rc.RevokeBudget, Interval: rc.RevokeInterval, Log: log, Metrics: reg,
		Silences: silence.Options{Log: log, Metrics: silence.NewMetrics(reg)}}
	if rc.LedgerKey != "" {
		key, err := revoke.ParseLedgerKey(rc.LedgerKey)
		if err != nil {
			return nil, fmt.Errorf("responder.ledger_key: %w", err)
		}
		o.LedgerKey = key
	} else if rc.Kong.AdminURL != "" {
		log.Warn("responder.ledger_key is not set: the shared revocation ledger will not keep revoked Kong keys, so restoring one needs a new key issued by hand; set responder.ledger_key_file to a key from responder ledger-keygen (the same key on every instance)")
	}
	rules, t, err := global.Open(ctx, kstate.Config{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: topic, Log: log, Metrics: sm, Fence: fence, Producer: prod}, o, mux)
	if err != nil {
		return nil, err
	}
	log.Info("global table read", "topic", topic, "silences", len(rules.Silences.List(false)),
		"kill_switch", rules.Switch.Engaged(), "budget_remaining", rules.Claims.Remaining())
	return &Global{Rules: rules, Table: t}, nil
}
