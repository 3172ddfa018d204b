package slackui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
)

func TestAllowed(t *testing.T) {
	groups := map[string][]string{"S0SOC": {"U1", "U2"}, "S0LEADS": {"U9"}}
	fetch := func(_ context.Context, g string) ([]string, error) {
		if g == "S0DOWN" {
			return nil, errors.New("slack is down")
		}
		return groups[g], nil
	}
	for _, tc := range []struct {
		name    string
		user    string
		ids     []string
		nilGrp  bool
		want    bool
		wantErr bool
	}{
		{"listed user", "U1", []string{"U1"}, false, true, false},
		{"group member", "U2", []string{"U7", "S0SOC"}, false, true, false},
		{"not a member", "U3", []string{"S0SOC", "S0LEADS"}, false, false, false},
		{"nobody listed", "U1", nil, false, false, false},
		{"empty user", "", []string{""}, false, false, false},
		{"no resolver: groups admit nobody", "U2", []string{"S0SOC"}, true, false, false},
		{"lookup fails: refused with the reason", "U2", []string{"S0DOWN"}, false, false, true},
		{"lookup fails but another group admits", "U9", []string{"S0DOWN", "S0LEADS"}, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g *Groups
			if !tc.nilGrp {
				g = NewGroups(fetch, time.Minute, nil)
			}
			got, err := Allowed(context.Background(), tc.user, tc.ids, g)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("Allowed = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestGroupsCacheForTTL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var calls int
	members := []string{"U1"}
	g := NewGroups(func(context.Context, string) ([]string, error) { calls++; return members, nil }, time.Minute, func() time.Time { return now })
	for i := 0; i < 5; i++ {
		if ok, _ := Allowed(context.Background(), "U1", []string{"S0SOC"}, g); !ok {
			t.Fatal("member refused")
		}
	}
	if calls != 1 {
		t.Errorf("%d lookups within the TTL; want 1", calls)
	}
	members = []string{"U2"} // U1 leaves the group
	now = now.Add(time.Minute)
	if ok, _ := Allowed(context.Background(), "U1", []string{"S0SOC"}, g); ok || calls != 2 {
		t.Errorf("after the TTL: allowed %v after %d lookups; want refused after 2", ok, calls)
	}
}

type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memAudit) Append(_ context.Context, recs ...audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	return nil
}

// A flood of forged requests from the proxy's address is limited by that
// address and sampled into one row; a verified click has its own bucket
// (its user's), so the flood does not lock the analysts out.
func TestInteractionRateLimitKeepsForgeriesApart(t *testing.T) {
	rg := newRig(t)
	store := &memAudit{}
	rg.h.Limit = clientlimit.New(clientlimit.Options{Endpoint: "slack", Rate: 1, Burst: 10, Now: func() time.Time { return rg.now }, Audit: store})
	body := revokeClick(t).body(t)
	codes := map[int]int{}
	for i := 0; i < 500; i++ {
		r := sign("wrong-secret-0123456789", rg.now, body)
		w := httptest.NewRecorder()
		rg.h.ServeHTTP(w, r)
		codes[w.Code]++
		if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 490 {
		t.Errorf("forgeries answered %v; want 10×401 then 490×429", codes)
	}
	if code := rg.serve(sign(testSecret, rg.now, body)); code != http.StatusOK || rg.ncalls() != 1 {
		t.Fatalf("verified click during the flood: %d, on called %d times; want 200 and 1", code, rg.ncalls())
	}
	if got := testutil.ToFloat64(rg.m.Interactions.WithLabelValues("rate_limited")); got != 490 {
		t.Errorf("rate_limited interactions %v; want 490", got)
	}
	rg.h.Limit.Flush(context.Background(), true)
	if len(store.recs) != 1 || !strings.Contains(store.recs[0].Detail, "500 slack requests refused from ip:192.0.2.1") {
		t.Errorf("audit rows %+v; want one with the 500 refusals", store.recs)
	}
	// The same user clicking too fast is limited too, by user id.
	for i := 0; i < 20; i++ {
		c := revokeClick(t)
		c.triggerID = fmt.Sprintf("trig-%d", i)
		rg.serve(sign(testSecret, rg.now, c.body(t)))
	}
	if n := rg.ncalls(); n != 10 {
		t.Errorf("on called %d times for 21 clicks of one user at once; want the burst, 10", n)
	}
}
