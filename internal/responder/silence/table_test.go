package silence

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// logTable is a global table in memory that every follower applies, in
// order, before Put returns.
type logTable struct {
	mu        sync.Mutex
	followers []func(key string, value []byte)
	keys      []string
}

func (m *logTable) follow(s *Store, t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.followers = append(m.followers, func(k string, v []byte) {
		if err := s.Apply(k, v); err != nil {
			t.Errorf("apply %s: %v", k, err)
		}
	})
}

func (m *logTable) Put(_ context.Context, key string, value []byte) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, key)
	for _, f := range m.followers {
		f(key, value)
	}
	return int64(len(m.keys)), nil
}

func (m *logTable) Delete(ctx context.Context, key string) (int64, error) {
	return m.Put(ctx, key, nil)
}

// TestTableStoreForeignRecord: a silence added on one instance mutes the
// matching anomaly on another; expiring it on the second ends it on both;
// retention deletes it from the table.
func TestTableStoreForeignRecord(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	tb := &logTable{}
	one := OpenTable(tb, Options{Now: clk.Now})
	three := OpenTable(tb, Options{Now: clk.Now})
	tb.follow(one, t)
	tb.follow(three, t)
	labels := map[string]string{LabelAgentID: "agent-7", LabelKind: "volume"}
	if got := three.Match(labels, clk.Now()); len(got) != 0 {
		t.Fatalf("matched before any silence: %v", got)
	}
	sil := mustAdd(t, one, silenceFor(`agent_id="agent-7"`, clk.Now(), time.Hour))
	if got := three.Match(labels, clk.Now()); !slices.Equal(ids(got), []string{sil.ID}) {
		t.Fatalf("instance 3 matches %v, want the silence %s added on instance 1", ids(got), sil.ID)
	}
	// A snooze retried on the other instance makes no second silence.
	k1, created1, err := one.AddWithKey(ctx, "click:abc", ForSnooze("agent-8", "U1", clk.Now(), time.Hour))
	if err != nil || !created1 {
		t.Fatalf("snooze: %v %v", created1, err)
	}
	k2, created2, err := three.AddWithKey(ctx, "click:abc", ForSnooze("agent-8", "U1", clk.Now(), time.Hour))
	if err != nil || created2 || k2.ID != k1.ID {
		t.Fatalf("retried snooze on instance 3: created %v id %s (first %s) err %v", created2, k2.ID, k1.ID, err)
	}
	if _, err := three.Expire(ctx, sil.ID, "U2", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := one.Match(labels, clk.Now()); len(got) != 0 {
		t.Fatalf("instance 1 still matches after instance 3 expired it: %v", ids(got))
	}
	if got, ok := one.Get(sil.ID); !ok || got.ExpiredBy != "U2" {
		t.Fatalf("instance 1 holds %+v", got)
	}
	clk.Add(121 * time.Hour)
	if err := one.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := three.Get(sil.ID); ok {
		t.Fatal("a silence past its retention is still held on instance 3")
	}
	if got := tb.keys[len(tb.keys)-1]; got[:len(TablePrefix)] != TablePrefix {
		t.Fatalf("last record %q is not a silence's", got)
	}
}

// TestTableStoreRefusesBadRecords: a record that does not parse, or names
// another silence than its key, mutes nothing.
func TestTableStoreRefusesBadRecords(t *testing.T) {
	clk := newClock()
	s := OpenTable(&logTable{}, Options{Now: clk.Now})
	good, err := appendLine(nil, Silence{ID: "x1", Matchers: []Matcher{{Name: LabelAgentID, Type: MatchEqual, Value: "a"}},
		StartsAt: clk.Now(), EndsAt: clk.Now().Add(time.Hour), CreatedAt: clk.Now(), CreatedBy: "U", Reason: ReasonManual})
	if err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]struct {
		key   string
		value []byte
	}{
		"not JSON":       {TablePrefix + "x1", []byte("{")},
		"unknown field":  {TablePrefix + "x1", []byte(`{"silence":{"id":"x1"},"mute_all":true}`)},
		"key of another": {TablePrefix + "x2", good[:len(good)-1]},
		"empty matchers": {TablePrefix + "x1", []byte(`{"silence":{"id":"x1","matchers":[]}}`)},
	} {
		if err := s.Apply(rec.key, rec.value); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if got := s.List(true); len(got) != 0 {
		t.Fatalf("bad records left silences: %v", ids(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(context.Background(), silenceFor(`agent_id="a"`, clk.Now(), time.Hour)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
}
