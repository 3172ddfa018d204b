package main

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
)

const silenceUsage = `usage:
  responder silence add --match 'agent_id="a1",kind="behaviour"' --for 2h --comment TEXT
  responder silence list [--expired]
  responder silence expire ID`

// runSilence manages silences: in the state directory's file when no
// responder holds it, else through the running responder's API
// (RESPONDER_API_TOKEN, a token with can_silence).
func runSilence(args []string) error {
	if len(args) == 0 {
		return cli.Usagef(silenceUsage)
	}
	verb, args := args[0], args[1:]
	fs := cli.FlagSet("responder silence " + verb)
	match := fs.String("match", "", "matchers, e.g. 'agent_id=\"a1\",kind=~\"beh.*\"' (docs/silences.md)")
	dur := fs.Duration("for", 2*time.Hour, "how long from now")
	comment := fs.String("comment", "", "why (required for add)")
	expired := fs.Bool("expired", false, "list expired silences too")
	api := fs.String("api", "", "the running responder's API base URL (default http://responder.api_addr)")
	var id string
	if verb == "expire" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		if *match == "" || *comment == "" {
			return cli.Usagef("silence add needs --match and --comment\n%s", silenceUsage)
		}
	case "expire":
		if id == "" {
			return cli.Usagef("silence expire needs the silence id\n%s", silenceUsage)
		}
	case "list":
	default:
		return cli.Usagef(silenceUsage)
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	switch verb {
	case "add":
		return asUsage(respctl.SilenceAdd(ctx, cfg, respctl.SilenceAddOptions{Matchers: *match, For: *dur, Comment: *comment, API: *api}, os.Stdout))
	case "expire":
		return respctl.SilenceExpire(ctx, cfg, respctl.SilenceExpireOptions{ID: id, API: *api}, os.Stdout)
	default:
		return respctl.SilenceList(ctx, cfg, respctl.SilenceListOptions{Expired: *expired, API: *api}, os.Stdout)
	}
}

// asUsage gives respctl's input mistakes the usage exit code.
func asUsage(err error) error {
	var ue *respctl.UsageError
	if errors.As(err, &ue) {
		return &cli.UsageError{Err: err}
	}
	return err
}
