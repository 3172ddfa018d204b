package respond

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/route"
)

// repairWait is how long a repair handed to the instance that holds the
// entry waits for its outcome before the API answers 202.
const repairWait = 10 * time.Second

var (
	_ respapi.Outbox         = (*Engine)(nil)
	_ route.PartitionLocator = (*Engine)(nil)
)

// RepairOutbox implements respapi.Outbox on this instance's outbox: it
// requeues or dismisses the entry (outbox.Requeue, outbox.Dismiss; the
// Worker is woken by the store) and audits what it did or refused.
//
// Once: with a request id, the repair is marked in the handled set before
// it acts, so a retry of the request (here, or forwarded by another
// instance after the global table dropped the first outcome) acts no more
// and answers the entry as it is, Duplicate. The price of marking first:
// a repair that failed (a changelog write error) is not retried under the
// same id; the caller sends a new one, as the CLI does on every run.
func (e *Engine) RepairOutbox(ctx context.Context, req respapi.OutboxRepair) (respapi.OutboxResult, error) {
	if req.Op != respapi.OutboxRequeue && req.Op != respapi.OutboxDismiss {
		return respapi.OutboxResult{}, fmt.Errorf("outbox repair %q: %w", req.Op, respapi.ErrBadRequest)
	}
	if req.RequestID != "" {
		first, err := e.o.Seen.MarkHandled(ctx, repairMark(req))
		if err != nil {
			return respapi.OutboxResult{}, fmt.Errorf("outbox %s %q: mark the request handled: %w", req.Op, req.Key, err)
		}
		if !first {
			en, found, err := e.o.Outbox.Get(ctx, req.Key)
			if err != nil {
				return respapi.OutboxResult{}, fmt.Errorf("outbox %s %q: %w", req.Op, req.Key, err)
			}
			if !found {
				return respapi.OutboxResult{}, fmt.Errorf("outbox %s: no entry %q: %w", req.Op, req.Key, respapi.ErrNotFound)
			}
			e.auditRepair(ctx, req, &en, audit.ResultSkipped, "request "+req.RequestID+" acted before; nothing done now (entry "+string(en.State)+")")
			return respapi.OutboxResult{Entry: en, Duplicate: true}, nil
		}
	}
	var en outbox.Entry
	var err error
	if req.Op == respapi.OutboxRequeue {
		en, err = outbox.Requeue(ctx, e.o.Outbox, req.Key)
	} else {
		en, err = outbox.Dismiss(ctx, e.o.Outbox, req.Key, "dismissed by "+req.Actor.String()+": "+req.Reason)
	}
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		e.auditRepair(ctx, req, nil, audit.ResultRefused, err.Error())
		return respapi.OutboxResult{}, fmt.Errorf("%w: %w", err, respapi.ErrNotFound)
	case errors.Is(err, outbox.ErrWrongState):
		cur, _, _ := e.o.Outbox.Get(ctx, req.Key)
		e.auditRepair(ctx, req, &cur, audit.ResultRefused, err.Error())
		return respapi.OutboxResult{}, fmt.Errorf("%w: %w", err, respapi.ErrConflict)
	case err != nil:
		e.auditRepair(ctx, req, nil, audit.ResultFailed, err.Error())
		return respapi.OutboxResult{}, err
	}
	e.auditRepair(ctx, req, &en, audit.ResultOK, "now "+string(en.State))
	return respapi.OutboxResult{Entry: en}, nil
}

// repairMark is the handled-set key of a repair request.
func repairMark(req respapi.OutboxRepair) string {
	return "outbox-repair:" + repairID(req)
}

// repairID is the command id of a repair: from its operation, key and
// request id, so a retry is the same command; a request without an id
// gets a new one each time.
func repairID(req respapi.OutboxRepair) string {
	if req.RequestID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return req.Op + ":" + hex.EncodeToString(b[:])
	}
	sum := sha256.Sum256([]byte(req.Op + "\x00" + req.Key + "\x00" + req.RequestID))
	return req.Op + ":" + hex.EncodeToString(sum[:16])
}

// auditRepair writes the record of a repair; en, when known, names the
// incident, agent and step the entry acts for. A failure to audit is
// logged: the repair is done (or refused) either way.
func (e *Engine) auditRepair(ctx context.Context, req respapi.OutboxRepair, en *outbox.Entry, res audit.Result, detail string) {
	action := respapi.OutboxAction(req.Op)
	r := audit.Record{Actor: req.Actor, Action: action, Why: req.Reason, Result: res, Detail: "outbox entry " + req.Key + ": " + detail}
	if en != nil && en.Key != "" {
		r.Detail = fmt.Sprintf("outbox entry %s (%s, partition %d): %s", en.Key, en.Kind, en.Partition, detail)
		if j, err := decodeJob(*en); err == nil {
			r.Playbook, r.DecisionID, r.StepID, r.IncidentID = j.Decision.Playbook, j.Decision.ID, j.Step.ID, j.Incident
			r.AnomalyID, r.AgentID, r.CredentialID = j.Anomaly.ID, j.Decision.Target.AgentID, j.Decision.Target.CredentialID
			if r.AgentID == "" {
				r.AgentID = j.Anomaly.AgentID
			}
		}
	}
	if err := e.o.Audit.Append(context.WithoutCancel(ctx), r); err != nil && e.o.Log != nil {
		e.o.Log.Error("audit record of an outbox repair not stored", "action", action, "key", req.Key, "err", err)
	}
	e.o.Metrics.action(action, string(res))
}

// LocatePartition implements route.PartitionLocator: the partition of the
// outbox entry an outbox repair names, when this instance holds it, or
// the partition the receiving instance found it in.
func (e *Engine) LocatePartition(ctx context.Context, c route.Command) (int32, bool) {
	if c.Kind != route.KindOutboxRepair || c.OutboxRepair == nil {
		return 0, false
	}
	if en, found, err := e.o.Outbox.Get(ctx, c.OutboxRepair.Key); err == nil && found {
		return en.Partition, true
	}
	if p := c.OutboxRepair.Partition; p >= 0 {
		return p, true
	}
	return 0, false
}

// executeRepair runs a forwarded repair: its result is the OutboxResult,
// the entry without its payload and result (the global table is no place
// for what an action sends).
func (e *Engine) executeRepair(ctx context.Context, c route.Command) (json.RawMessage, error) {
	res, err := e.RepairOutbox(ctx, c.OutboxRepair.OutboxRepair)
	if err != nil {
		return nil, err
	}
	res.Entry.Payload, res.Entry.Result = nil, nil
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode the result of %s: %w", c.ID, err)
	}
	return b, nil
}

// routedOutbox is the API's Outbox with several instances: a repair of an
// entry this instance does not hold goes to the owner of the entry's
// partition.
type routedOutbox struct {
	e  *Engine
	r  *route.Router
	cl partstate.Changelog
	// wait bounds the wait for the owner's answer; 0 means repairWait.
	wait time.Duration
}

// RepairOutbox implements respapi.Outbox. An entry held here is repaired
// here. Otherwise the state topic says whether the entry exists and in
// which partition (a read of every partition, as `responder outbox list`
// does: repairs are rare and human-paced), and the owner of that
// partition runs the repair; when it has not answered within the wait,
// the answer is respapi.ErrQueued.
func (ro routedOutbox) RepairOutbox(ctx context.Context, req respapi.OutboxRepair) (respapi.OutboxResult, error) {
	c := route.Command{ID: "outbox:" + repairID(req), Kind: route.KindOutboxRepair,
		OutboxRepair: &route.OutboxRepair{OutboxRepair: req, Partition: -1}}
	if ro.r.Local(ctx, c) {
		return ro.e.RepairOutbox(ctx, req)
	}
	if _, earlier := ro.r.Get(c.ID); !earlier {
		en, found, err := FindOutboxEntry(ctx, ro.cl, req.Key)
		if err != nil {
			return respapi.OutboxResult{}, fmt.Errorf("outbox %s %q: find its partition: %w", req.Op, req.Key, err)
		}
		if !found {
			ro.e.auditRepair(ctx, req, nil, audit.ResultRefused, "no such entry in any partition")
			return respapi.OutboxResult{}, fmt.Errorf("outbox %s: no entry %q in any partition: %w", req.Op, req.Key, respapi.ErrNotFound)
		}
		c.OutboxRepair.Partition = en.Partition
	}
	wait := ro.wait
	if wait <= 0 {
		wait = repairWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	got, earlier, err := ro.r.Forward(wctx, c)
	switch {
	case errors.Is(err, route.ErrPending):
		return respapi.OutboxResult{}, fmt.Errorf("outbox %s %q: %w", req.Op, req.Key, respapi.ErrQueued)
	case err != nil:
		return respapi.OutboxResult{}, err
	}
	if err := got.Err(); err != nil {
		return respapi.OutboxResult{}, err
	}
	var res respapi.OutboxResult
	if err := json.Unmarshal(got.Result, &res); err != nil {
		return respapi.OutboxResult{}, fmt.Errorf("decode the result of %s from %s: %w", c.ID, got.By, err)
	}
	res.Duplicate = res.Duplicate || earlier
	return res, nil
}

// FindOutboxEntry reads every partition of the state changelog for the
// entry of key, as the partitions' owners would restore it. When two
// partitions hold the key (an entry of no agent queued again by a later
// owner), the one updated last wins.
func FindOutboxEntry(ctx context.Context, cl partstate.Changelog, key string) (outbox.Entry, bool, error) {
	want, wantPayload := outbox.PartRecordKeys(key)
	var (
		mu    sync.Mutex
		best  outbox.Entry
		found bool
		wg    sync.WaitGroup
		errs  = make([]error, cl.Partitions())
		sem   = make(chan struct{}, 4)
	)
	for p := range int32(cl.Partitions()) {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var last, payload []byte
			errs[p] = cl.Restore(ctx, p, func(r partstate.Record) error {
				switch r.Key {
				case want:
					last = r.Value
				case wantPayload:
					payload = r.Value
				}
				return nil
			})
			if errs[p] != nil || len(last) == 0 {
				return
			}
			en, err := outbox.DecodePartEntry(key, last, payload)
			if err != nil {
				errs[p] = fmt.Errorf("partition %d: %w", p, err)
				return
			}
			en.Partition = p
			mu.Lock()
			if !found || en.Updated.After(best.Updated) {
				best, found = en, true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return outbox.Entry{}, false, err
	}
	return best, found, nil
}
