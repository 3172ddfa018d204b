package vissvc

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
)

func TestOpenEmbedded(t *testing.T) {
	var cfg config.Config
	cfg.Embedded.DataDir = t.TempDir()
	now := time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)
	svc, closeFn, err := Open(context.Background(), cfg, nil, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	who := audit.Actor{Kind: audit.ActorCLI, Name: "alice"}
	if _, err := svc.Findings(context.Background(), who); err != nil {
		t.Fatal(err)
	}
	fs, err := audit.OpenFileStore(filepath.Join(cfg.Embedded.DataDir, "responder", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := fs.Query(context.Background(), audit.Filter{})
	if err != nil || len(recs) != 1 || recs[0].Action != audit.ActionAsk || recs[0].Actor != who || recs[0].AtMs != now.UnixMilli() {
		t.Fatalf("audit %+v, %v; want the question", recs, err)
	}
	if _, _, err := Open(context.Background(), cfg, nil, Options{Config: visibility.Config{DormantDays: 1000}}); err == nil {
		t.Error("an invalid Config opened")
	}
}

func TestOpenDistributedWithoutSource(t *testing.T) {
	var cfg config.Config
	cfg.Embedded.DataDir = t.TempDir()
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	if _, _, err := Open(context.Background(), cfg, nil, Options{}); !errors.Is(err, ErrNoClickHouseSource) {
		t.Fatalf("Open: %v; want ErrNoClickHouseSource", err)
	}
}
