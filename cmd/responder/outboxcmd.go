package main

import (
	"errors"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
)

const outboxUsage = `usage:
  responder outbox list [--all]          open and parked actions (--all: every state)
  responder outbox requeue KEY           run a parked or failed action again, now
  responder outbox dismiss KEY --reason TEXT   give up on a parked action`

// runOutbox inspects and repairs the durable action queue. A parked entry
// is an action that kept failing: it needs a human, who either requeues it
// (the gateway is back) or dismisses it (it is not to be done). The file
// belongs to one process: stop the responder first.
func runOutbox(args []string) error {
	if len(args) == 0 {
		return cli.Usagef(outboxUsage)
	}
	verb, args := args[0], args[1:]
	var key string
	if (verb == "requeue" || verb == "dismiss") && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		key, args = args[0], args[1:]
	}
	fs := cli.FlagSet("responder outbox " + verb)
	all := fs.Bool("all", false, "list entries in every state")
	reason := fs.String("reason", "", "why the action is dismissed (required for dismiss)")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	switch {
	case verb == "list":
	case verb == "requeue" && key != "":
	case verb == "dismiss" && key != "" && *reason != "":
	default:
		return cli.Usagef(outboxUsage)
	}
	st, err := outbox.OpenFile(filepath.Join(cfg.Responder.StateDir, respond.OutboxFile), outbox.FileOptions{})
	if errors.Is(err, outbox.ErrInUse) {
		return fmt.Errorf("a responder is running on %s; stop it first (the outbox belongs to one process)", cfg.Responder.StateDir)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	switch verb {
	case "list":
		states := []outbox.State{outbox.StatePending, outbox.StateInFlight, outbox.StateParked}
		if *all {
			states = nil
		}
		ens, err := st.List(ctx, states...)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tKIND\tSTATE\tATTEMPTS\tDUE (UTC)\tLAST ERROR")
		for _, e := range ens {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", audit.TerminalSafe(e.Key, 100), e.Kind, e.State, e.Attempts,
				e.NextAttempt.UTC().Format(time.DateTime), audit.TerminalSafe(e.LastError, 120))
		}
		return tw.Flush()
	case "requeue":
		e, err := outbox.Requeue(ctx, st, key)
		if err != nil {
			return err
		}
		fmt.Printf("%s is %s again; a responder on %s runs it at its next start\n", e.Key, e.State, cfg.Responder.StateDir)
	case "dismiss":
		e, err := outbox.Dismiss(ctx, st, key, "dismissed by "+operator().String()+": "+*reason)
		if err != nil {
			return err
		}
		fmt.Printf("%s is %s\n", e.Key, e.State)
	}
	return nil
}
