package respapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
)

// fakeOutbox answers as the Engine does: requeue of parked or failed,
// dismiss of parked; "elsewhere" is held by an instance that has not
// answered yet.
type fakeOutbox struct {
	mu    sync.Mutex
	state map[string]outbox.State
	got   []OutboxRepair
}

func (f *fakeOutbox) RepairOutbox(_ context.Context, req OutboxRepair) (OutboxResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	if req.Key == "elsewhere" {
		return OutboxResult{}, fmt.Errorf("outbox %s: %w", req.Op, ErrQueued)
	}
	st, ok := f.state[req.Key]
	if !ok {
		return OutboxResult{}, fmt.Errorf("no entry %q: %w", req.Key, ErrNotFound)
	}
	switch {
	case req.Op == OutboxRequeue && (st == outbox.StateParked || st == outbox.StateFailed):
		st = outbox.StatePending
	case req.Op == OutboxDismiss && st == outbox.StateParked:
		st = outbox.StateFailed
	default:
		return OutboxResult{}, fmt.Errorf("it is %s: %w", st, ErrConflict)
	}
	f.state[req.Key] = st
	return OutboxResult{Entry: outbox.Entry{Key: req.Key, Kind: "revoke", State: st, Partition: 2}}, nil
}

func TestOutboxRepairEndpoints(t *testing.T) {
	fo := &fakeOutbox{state: map[string]outbox.State{"parked-1": outbox.StateParked, "parked-2": outbox.StateParked, "pending-1": outbox.StatePending}}
	fx := newFixture(t, func(o *Options) {
		o.Outbox = fo
		o.Tokens[1].CanRepairOutbox = true // oncall
	})
	for _, tc := range []struct {
		name, op, secret, body string
		code                   int
		// state is the entry's state in a 200's body; audited, the
		// result of the record the handler writes ("" for none).
		state   outbox.State
		audited audit.Result
	}{
		{name: "token without the grant", op: "requeue", secret: secretCI, body: `{"key":"parked-1"}`, code: http.StatusForbidden, audited: audit.ResultRefused},
		{name: "no key", op: "requeue", secret: secretOncall, body: `{}`, code: http.StatusBadRequest, audited: audit.ResultRefused},
		{name: "unknown field", op: "requeue", secret: secretOncall, body: `{"key":"parked-1","partition":2}`, code: http.StatusBadRequest, audited: audit.ResultRefused},
		{name: "dismiss without a reason", op: "dismiss", secret: secretOncall, body: `{"key":"parked-2","reason":"  "}`, code: http.StatusBadRequest, audited: audit.ResultRefused},
		{name: "unknown key", op: "requeue", secret: secretOncall, body: `{"key":"nope"}`, code: http.StatusNotFound},
		{name: "pending entry requeued", op: "requeue", secret: secretOncall, body: `{"key":"pending-1"}`, code: http.StatusConflict},
		{name: "requeue", op: "requeue", secret: secretOncall, body: `{"key":"parked-1","request_id":"r-1"}`, code: http.StatusOK, state: outbox.StatePending},
		{name: "dismiss", op: "dismiss", secret: secretOncall, body: `{"key":"parked-2","reason":"agent retired"}`, code: http.StatusOK, state: outbox.StateFailed},
		{name: "dismiss of a failed entry", op: "dismiss", secret: secretOncall, body: `{"key":"parked-2","reason":"again"}`, code: http.StatusConflict},
		{name: "held elsewhere, not answered yet", op: "requeue", secret: secretOncall, body: `{"key":"elsewhere"}`, code: http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fx.store.All())
			r := fx.do(t, http.MethodPost, "/v1/outbox/"+tc.op, "Bearer "+tc.secret, tc.body)
			wantCode(t, r, tc.code)
			if tc.state != "" {
				var out OutboxEntryResponse
				if err := json.Unmarshal(r.body, &out); err != nil || out.State != tc.state || out.Partition != 2 {
					t.Fatalf("answer %s (%v); want state %s in partition 2", r.body, err, tc.state)
				}
			}
			recs := fx.store.All()[before:]
			if tc.audited == "" {
				if len(recs) != 0 {
					t.Fatalf("the handler audited %+v; the Outbox audits what it answers", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].Result != tc.audited || recs[0].Action != OutboxAction(tc.op) || recs[0].Actor.TokenName == "" {
				t.Fatalf("audit records %+v; want one %s %s naming the token", recs, OutboxAction(tc.op), tc.audited)
			}
		})
	}
	// What reached the Outbox: only the requests that passed the checks,
	// with the caller's request id kept apart from other tokens'.
	if len(fo.got) != 6 {
		t.Fatalf("the Outbox got %d requests, want 6: %+v", len(fo.got), fo.got)
	}
	rq := fo.got[2]
	if rq.Op != OutboxRequeue || rq.RequestID != "api:oncall:r-1" || rq.Actor.String() != "api:oncall" {
		t.Errorf("requeue reached the Outbox as %+v", rq)
	}
	if d := fo.got[3]; d.Reason != "agent retired" || d.RequestID != "" {
		t.Errorf("dismiss reached the Outbox as %+v", d)
	}
}

func TestOutboxRepairNotServedWithoutAnOutbox(t *testing.T) {
	fx := newFixture(t)
	r := fx.do(t, http.MethodPost, "/v1/outbox/requeue", "Bearer "+secretOncall, `{"key":"k"}`)
	if r.code != http.StatusNotFound && r.code != http.StatusMethodNotAllowed {
		t.Fatalf("status %d; want the route absent", r.code)
	}
}
