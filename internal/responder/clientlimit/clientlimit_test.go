package clientlimit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

type memAppender struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memAppender) Append(_ context.Context, recs ...audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	return nil
}

func (m *memAppender) all() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Record(nil), m.recs...)
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func TestAdmitBurstThenRateWithRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      float64
		burst     int
		wantFirst int // requests admitted at one instant
		wantWait  time.Duration
	}{
		{"default-like", 5, 20, 20, time.Second},
		{"slow", 0.1, 2, 2, 10 * time.Second},
		{"one", 1, 1, 1, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			l := New(Options{Rate: tc.rate, Burst: tc.burst, Now: c.now})
			cl := Client{Kind: "ip", ID: "127.0.0.1"}
			n := 0
			var wait time.Duration
			for i := 0; i < tc.burst*3; i++ {
				ok, w := l.Admit(cl)
				if !ok {
					wait = w
					break
				}
				n++
			}
			if n != tc.wantFirst || wait != tc.wantWait {
				t.Errorf("admitted %d then wait %s; want %d then %s", n, wait, tc.wantFirst, tc.wantWait)
			}
			// Another client has its own bucket.
			if ok, _ := l.Admit(Client{Kind: "token", ID: "ci"}); !ok {
				t.Error("a second client was refused: buckets are shared")
			}
			// After the wait, one more.
			c.t = c.t.Add(wait)
			if ok, _ := l.Admit(cl); !ok {
				t.Errorf("refused after waiting Retry-After %s", wait)
			}
		})
	}
}

func TestOverflowClientsShareOneBucketAndOneRow(t *testing.T) {
	c := &clock{t: t0}
	app := &memAppender{}
	l := New(Options{Rate: 1, Burst: 1, MaxClients: 4, Now: c.now, Audit: app})
	refused := 0
	for i := 0; i < 100; i++ {
		cl := Client{Kind: "ip", ID: fmt.Sprintf("127.0.%d.1", i)}
		if ok, _ := l.Admit(cl); !ok {
			refused++
			l.Refused(context.Background(), cl, ReasonRateLimited, "/v1/audit")
		}
	}
	// 4 clients have their own bucket; the other 96 share one, which
	// admits one of them.
	if refused != 95 {
		t.Errorf("%d refused; want 95", refused)
	}
	l.Flush(context.Background(), true)
	rows := app.all()
	if len(rows) != 1 || !strings.Contains(rows[0].Detail, "95 api requests refused from ip:other") {
		t.Fatalf("rows %+v; want one row for the overflow client with 95", rows)
	}
}

func TestRowsPerClientPerInterval(t *testing.T) {
	c := &clock{t: t0}
	app := &memAppender{}
	l := New(Options{Endpoint: "slack", Rate: 1, Burst: 1, SampleInterval: time.Minute, Now: c.now, Audit: app})
	ctx := context.Background()
	a, b := Client{Kind: "ip", ID: "10.0.0.1"}, Client{Kind: "slack", ID: "U1"}
	// 10 minutes, 30 refusals a minute from each client.
	for i := 0; i < 300; i++ {
		l.Refused(ctx, a, ReasonBadRequest, "/slack/interactions")
		l.Refused(ctx, b, ReasonRateLimited, "/slack/interactions")
		c.t = c.t.Add(2 * time.Second)
	}
	l.Flush(ctx, true)
	rows := app.all()
	if len(rows) < 2*10 || len(rows) > 2*11 {
		t.Errorf("%d rows for 2 clients over 10 intervals; want 20 to 22", len(rows))
	}
	total := 0
	for _, r := range rows {
		var n int
		if _, err := fmt.Sscanf(r.Detail, "%d slack requests refused", &n); err != nil {
			t.Fatalf("row %q: %v", r.Detail, err)
		}
		total += n
		if r.Result != audit.ResultRefused || r.Action != ActionRefused || r.Actor.Kind != audit.ActorSlack {
			t.Errorf("row %+v", r)
		}
	}
	if total != 600 {
		t.Errorf("rows count %d refusals; want 600", total)
	}
}

func TestIPDropsThePort(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:5555": "ip:127.0.0.1", "[::1]:80": "ip:::1", "junk": "ip:junk"} {
		if got := IP(in).String(); got != want {
			t.Errorf("IP(%q) = %q; want %q", in, got, want)
		}
	}
}
