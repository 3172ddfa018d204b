package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeRetentionStore struct {
	held     bool
	leaseErr error
	dropErr  error
	dropped  []string
	ttl      time.Duration
	cut      time.Time
	drops    int
}

func (f *fakeRetentionStore) TakeLease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	f.ttl = ttl
	return f.held, f.leaseErr
}

func (f *fakeRetentionStore) DropPartitionsBefore(_ context.Context, day time.Time) ([]string, error) {
	f.drops++
	f.cut = day
	return f.dropped, f.dropErr
}

func TestRetentionRunOnce(t *testing.T) {
	now := time.Date(2026, 3, 10, 17, 5, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		store       fakeRetentionStore
		want        string
		wantDrops   int
		wantDropped float64
		wantSuccess bool
	}{
		{"holder drops", fakeRetentionStore{held: true, dropped: []string{"20260201", "20260202"}}, RetentionOK, 1, 2, true},
		{"holder, nothing due", fakeRetentionStore{held: true}, RetentionOK, 1, 0, true},
		{"standby", fakeRetentionStore{held: false}, RetentionStandby, 0, 0, false},
		{"lease error", fakeRetentionStore{leaseErr: errors.New("boom")}, RetentionError, 0, 0, false},
		{"drop error after one", fakeRetentionStore{held: true, dropped: []string{"20260201"}, dropErr: errors.New("boom")}, RetentionError, 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.store
			m := NewRetentionMetrics(prometheus.NewRegistry())
			r := &Retention{Store: &st, Days: 30, Interval: time.Hour, Owner: "me", Now: func() time.Time { return now }, Metrics: m}
			got, _, err := r.RunOnce(t.Context())
			if got != tc.want || (err != nil) != (tc.want == RetentionError) {
				t.Fatalf("RunOnce = %s, %v; want %s", got, err, tc.want)
			}
			if st.drops != tc.wantDrops {
				t.Fatalf("%d drops; want %d", st.drops, tc.wantDrops)
			}
			if st.ttl != 90*time.Minute {
				t.Fatalf("lease ttl %s; want 1.5 intervals", st.ttl)
			}
			if st.drops > 0 && !st.cut.Equal(time.Date(2026, 2, 8, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("cut-off %v; want 30 days before the day", st.cut)
			}
			if n := testutil.ToFloat64(m.Runs.WithLabelValues(tc.want)); n != 1 {
				t.Fatalf("runs{result=%s} = %v", tc.want, n)
			}
			if n := testutil.ToFloat64(m.Dropped); n != tc.wantDropped {
				t.Fatalf("dropped = %v; want %v", n, tc.wantDropped)
			}
			if ts := testutil.ToFloat64(m.LastSuccess); (ts == float64(now.Unix())) != tc.wantSuccess {
				t.Fatalf("last success %v", ts)
			}
		})
	}
}

// Run drops at start, before the first tick, and returns nil when ctx ends.
func TestRetentionRunsAtStart(t *testing.T) {
	st := &fakeRetentionStore{held: true}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := &Retention{Store: st, Days: 1, Interval: time.Hour}
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if st.drops != 1 {
		t.Fatalf("%d runs at start; want 1", st.drops)
	}
	if err := (&Retention{Store: st, Days: 1}).Run(t.Context()); err == nil {
		t.Fatal("Run without an interval")
	}
}
