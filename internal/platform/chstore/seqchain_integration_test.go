package chstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationSequencedChainTwoInstances: two responder instances, each
// with its own table reader on one Kafka topic and its own ClickHouse
// connection, append bundles at once. ClickHouse alone would fork the
// chain (TestIntegrationChainTwoWriters); sequenced by the table, the
// stored chain is one line with every bundle once.
func TestIntegrationSequencedChainTwoInstances(t *testing.T) {
	st := newStore(t)
	k := itest.PlainKafka(t)
	sec := k.Security(t)
	topic := "seqchain-test-" + itest.RandHex(6)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, 1)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	open := func(s *Store) *evidence.SequencedChain {
		c := evidence.NewSequencedChain(NewChain(s), nil)
		tb, err := kstate.OpenTable(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}, c.Apply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tb.Close() })
		c.Attach(tb)
		return c
	}
	chains := []*evidence.SequencedChain{open(st), open(openSecond(t, st))}
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		c := chains[i%2]
		wg.Go(func() {
			id := fmt.Sprintf("ev-seq-%02d", i)
			for {
				head, seq, err := c.Head(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				rec := chainRecord(seq+1, head)
				rec.BundleID, rec.ManifestSHA256 = id, hashOf(fmt.Sprintf("%s-%d", id, seq))
				err = c.Append(ctx, rec)
				if err == nil {
					return
				}
				if !errors.Is(err, evidence.ErrChainMoved) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	bySeq := map[int64]evidence.Record{}
	if err := NewChain(st).Records(ctx, func(r evidence.Record) error {
		if o, dup := bySeq[r.Seq]; dup && o.ManifestSHA256 != r.ManifestSHA256 {
			return fmt.Errorf("seq %d holds %s and %s: the chain forked", r.Seq, o.BundleID, r.BundleID)
		}
		bySeq[r.Seq] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	prev := evidence.ZeroHash
	for s := int64(1); s <= n; s++ {
		r, ok := bySeq[s]
		if !ok || r.PrevSHA256 != prev {
			t.Fatalf("seq %d: record %v present %v, want it linked to %s", s, r, ok, prev)
		}
		prev = r.ManifestSHA256
	}
	if len(bySeq) != n {
		t.Fatalf("%d seqs stored, want %d", len(bySeq), n)
	}
}
