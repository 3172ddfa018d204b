package respctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

// The outbox commands inspect and repair the durable action queue. A
// parked entry is an action that kept failing: it needs a human, who
// either requeues it (the gateway is back) or dismisses it (it is not to
// be done). The file belongs to one process: with a responder running on
// the state directory, and always in the distributed mode, requeue and
// dismiss go through a running responder's API.

// OutboxListOptions say which entries to list.
type OutboxListOptions struct {
	// All lists entries in every state, not only open and parked ones.
	All bool
}

// OutboxRequeueOptions name the entry to run again. API is the running
// responder's API base URL ("" means http://responder.api_addr);
// RequestID the idempotency key sent to it ("" means a new one).
type OutboxRequeueOptions struct {
	Key       string
	API       string
	RequestID string
}

// OutboxDismissOptions name the entry to give up on, and why; API and
// RequestID as for OutboxRequeueOptions.
type OutboxDismissOptions struct {
	Key       string
	Reason    string
	API       string
	RequestID string
}

// OutboxList writes the outbox's entries to w as a table: the state
// directory's file, or in the distributed mode every partition's entries
// in kafka.responder_state_topic (read while the responders run).
func OutboxList(ctx context.Context, cfg config.Config, o OutboxListOptions, w io.Writer) error {
	states := []outbox.State{outbox.StatePending, outbox.StateInFlight, outbox.StateParked}
	if o.All {
		states = nil
	}
	var ens []outbox.Entry
	if cfg.Distributed() {
		shared, err := respsvc.ReadSharedState(ctx, cfg, nil)
		if err != nil {
			return err
		}
		for _, e := range shared.Outbox {
			if len(states) == 0 || slices.Contains(states, e.State) {
				ens = append(ens, e)
			}
		}
	} else {
		st, err := openOutbox(cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		if ens, err = st.List(ctx, states...); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tKIND\tSTATE\tATTEMPTS\tDUE (UTC)\tLAST ERROR")
	for _, e := range ens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", audit.TerminalSafe(e.Key, 100), e.Kind, e.State, e.Attempts,
			e.NextAttempt.UTC().Format(time.DateTime), audit.TerminalSafe(e.LastError, 120))
	}
	return tw.Flush()
}

// OutboxRequeue makes a parked or failed entry due again, now, and writes
// a line to w. In the distributed mode, or when a responder holds the
// state directory, it goes through a running responder's API (a token
// with can_repair_outbox), which has the instance holding the entry
// requeue it, while it runs; otherwise it edits the state directory's
// file, and a responder started on it runs the entry.
func OutboxRequeue(ctx context.Context, cfg config.Config, o OutboxRequeueOptions, w io.Writer) error {
	return outboxRepair(ctx, cfg, respapi.OutboxRequeue, o.Key, "", o.API, o.RequestID, w, func(st outbox.Store, me audit.Actor) (outbox.Entry, error) {
		return outbox.Requeue(ctx, st, o.Key)
	})
}

// OutboxDismiss gives up on a parked entry, noting who and why, and writes
// a line to w; like OutboxRequeue, through the API when a responder runs.
func OutboxDismiss(ctx context.Context, cfg config.Config, o OutboxDismissOptions, w io.Writer) error {
	return outboxRepair(ctx, cfg, respapi.OutboxDismiss, o.Key, o.Reason, o.API, o.RequestID, w, func(st outbox.Store, me audit.Actor) (outbox.Entry, error) {
		return outbox.Dismiss(ctx, st, o.Key, "dismissed by "+me.String()+": "+o.Reason)
	})
}

// outboxRepair runs one repair through the API (distributed mode, or a
// responder holding the file) or on the file with local, audited either
// way.
func outboxRepair(ctx context.Context, cfg config.Config, op, key, reason, base, requestID string, w io.Writer,
	local func(outbox.Store, audit.Actor) (outbox.Entry, error)) error {
	var st *outbox.FileStore
	if !cfg.Distributed() {
		var err error
		st, err = outbox.OpenFile(filepath.Join(cfg.Responder.StateDir, respond.OutboxFile), outbox.FileOptions{})
		if err != nil && !errors.Is(err, outbox.ErrInUse) {
			return err
		}
	}
	if st == nil {
		api, err := newAPIClient(cfg, base, "can_repair_outbox")
		if err != nil {
			return err
		}
		if requestID == "" {
			requestID = fmt.Sprintf("cli-%d", time.Now().UnixNano())
		}
		b, err := api.callStatus(ctx, http.MethodPost, "/v1/outbox/"+op, map[string]string{"key": key, "reason": reason, "request_id": requestID})
		if err != nil {
			return err
		}
		var out respapi.OutboxEntryResponse
		if err := json.Unmarshal(b.body, &out); err != nil {
			return fmt.Errorf("responder API: decode its answer: %w", err)
		}
		switch {
		case b.status == http.StatusAccepted:
			fmt.Fprintf(w, "%s: handed to the responder instance that holds it, which has not answered yet; `responder outbox list --all` shows when it is done (request id %s)\n",
				audit.TerminalSafe(key, 200), requestID)
		case out.Duplicate:
			fmt.Fprintf(w, "%s is %s (request %s had acted before; nothing done now)\n", audit.TerminalSafe(out.Key, 200), out.State, requestID)
		default:
			fmt.Fprintf(w, "%s is %s\n", audit.TerminalSafe(out.Key, 200), out.State)
		}
		return nil
	}
	defer st.Close()
	me := Operator()
	e, err := local(st, me)
	rec := audit.Record{Actor: me, Action: respapi.OutboxAction(op), Why: reason, Result: audit.ResultOK, Detail: "outbox entry " + key + ": now " + string(e.State)}
	switch {
	case errors.Is(err, outbox.ErrNotFound), errors.Is(err, outbox.ErrWrongState):
		rec.Result, rec.Detail = audit.ResultRefused, err.Error()
	case err != nil:
		rec.Result, rec.Detail = audit.ResultFailed, err.Error()
	}
	al, closeAudit, aerr := respsvc.OpenAudit(ctx, cfg, nil)
	if aerr == nil {
		aerr = al.Append(ctx, rec)
		closeAudit()
	}
	if err != nil {
		return errors.Join(err, aerr)
	}
	if aerr != nil {
		return fmt.Errorf("%s is %s, but its audit record was not stored: %w", e.Key, e.State, aerr)
	}
	if op == respapi.OutboxRequeue {
		fmt.Fprintf(w, "%s is %s again; a responder on %s runs it at its next start\n", e.Key, e.State, cfg.Responder.StateDir)
	} else {
		fmt.Fprintf(w, "%s is %s\n", e.Key, e.State)
	}
	return nil
}

func openOutbox(cfg config.Config) (*outbox.FileStore, error) {
	st, err := outbox.OpenFile(filepath.Join(cfg.Responder.StateDir, respond.OutboxFile), outbox.FileOptions{})
	if errors.Is(err, outbox.ErrInUse) {
		return nil, fmt.Errorf("a responder is running on %s; stop it first (the outbox belongs to one process)", cfg.Responder.StateDir)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}
