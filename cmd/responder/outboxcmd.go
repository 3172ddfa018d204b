package main

import (
	"os"
	"strings"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
)

const outboxUsage = `usage:
  responder outbox list [--all]          open and parked actions (--all: every state)
  responder outbox requeue KEY           run a parked or failed action again, now
  responder outbox dismiss KEY --reason TEXT   give up on a parked action`

// runOutbox inspects and repairs the durable action queue (respctl's
// Outbox commands). The file belongs to one process: stop the responder
// first.
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
	ctx, stop := cli.SignalContext()
	defer stop()
	switch verb {
	case "list":
		return respctl.OutboxList(ctx, cfg, respctl.OutboxListOptions{All: *all}, os.Stdout)
	case "requeue":
		return respctl.OutboxRequeue(ctx, cfg, respctl.OutboxRequeueOptions{Key: key}, os.Stdout)
	default:
		return respctl.OutboxDismiss(ctx, cfg, respctl.OutboxDismissOptions{Key: key, Reason: *reason}, os.Stdout)
	}
}
