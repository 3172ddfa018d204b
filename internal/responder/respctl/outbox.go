package respctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

// The outbox commands inspect and repair the durable action queue. A
// parked entry is an action that kept failing: it needs a human, who
// either requeues it (the gateway is back) or dismisses it (it is not to
// be done). The file belongs to one process: with a responder running on
// the state directory they fail, asking to stop it first.

// OutboxListOptions say which entries to list.
type OutboxListOptions struct {
	// All lists entries in every state, not only open and parked ones.
	All bool
}

// OutboxRequeueOptions name the entry to run again.
type OutboxRequeueOptions struct {
	Key string
}

// OutboxDismissOptions name the entry to give up on, and why.
type OutboxDismissOptions struct {
	Key    string
	Reason string
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
// a line to w: a responder on the state directory runs it at its next
// start.
func OutboxRequeue(ctx context.Context, cfg config.Config, o OutboxRequeueOptions, w io.Writer) error {
	st, err := openOutbox(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	e, err := outbox.Requeue(ctx, st, o.Key)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s is %s again; a responder on %s runs it at its next start\n", e.Key, e.State, cfg.Responder.StateDir)
	return nil
}

// OutboxDismiss gives up on a parked entry, noting who and why, and writes
// a line to w.
func OutboxDismiss(ctx context.Context, cfg config.Config, o OutboxDismissOptions, w io.Writer) error {
	st, err := openOutbox(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	e, err := outbox.Dismiss(ctx, st, o.Key, "dismissed by "+Operator().String()+": "+o.Reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s is %s\n", e.Key, e.State)
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
