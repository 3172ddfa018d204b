package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
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
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		return err
	}
	st, err := silence.Open(filepath.Join(cfg.Responder.StateDir, respond.SilencesFile), silence.Options{})
	if errors.Is(err, silence.ErrInUse) {
		api, err := newAPIClient(cfg, *api, "can_silence")
		if err != nil {
			return err
		}
		return silenceViaAPI(ctx, api, verb, *match, *dur, *comment, *expired, id)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	me := operator()
	switch verb {
	case "add":
		ms, err := silence.ParseMatchers(*match)
		if err != nil {
			return cli.Usagef("--match: %v", err)
		}
		now := time.Now()
		s, err := st.Add(ctx, silence.Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(*dur), CreatedBy: "cli:" + me.Name, Comment: *comment})
		if err != nil {
			return err
		}
		if err := auditSilence(ctx, cfg, me, "added silence "+s.ID+": "+silence.FormatMatchers(s.Matchers), *comment); err != nil {
			return err
		}
		fmt.Printf("silence %s: %s until %s\n", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339))
	case "expire":
		s, err := st.Expire(ctx, id, "cli:"+me.Name, time.Now())
		if err != nil {
			return err
		}
		if err := auditSilence(ctx, cfg, me, "expired silence "+s.ID, ""); err != nil {
			return err
		}
		fmt.Printf("silence %s expired\n", s.ID)
	case "list":
		printSilences(os.Stdout, st.List(*expired))
	}
	return nil
}

func auditSilence(ctx context.Context, cfg config.Config, me audit.Actor, detail, why string) error {
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer closeAudit()
	return al.Append(ctx, audit.Record{Actor: me, Action: "silence", Why: why, Result: audit.ResultOK, Detail: detail})
}

func printSilences(w io.Writer, ss []silence.Silence) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tMATCHERS\tUNTIL (UTC)\tBY\tCOMMENT")
	now := time.Now()
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State(now), audit.TerminalSafe(silence.FormatMatchers(s.Matchers), 120),
			s.EndsAt.UTC().Format("2006-01-02 15:04"), audit.TerminalSafe(s.CreatedBy, 40), audit.TerminalSafe(s.Comment, 60))
	}
	tw.Flush()
}

func silenceViaAPI(ctx context.Context, api *apiClient, verb, match string, dur time.Duration, comment string, expired bool, id string) error {
	var b []byte
	var err error
	switch verb {
	case "add":
		b, err = api.call(ctx, http.MethodPost, "/v1/silences", map[string]string{"matchers": match, "duration": dur.String(), "comment": comment})
	case "expire":
		b, err = api.call(ctx, http.MethodDelete, "/v1/silences/"+id, nil)
	default:
		path := "/v1/silences"
		if expired {
			path += "?expired=1"
		}
		b, err = api.call(ctx, http.MethodGet, path, nil)
	}
	if err != nil {
		return err
	}
	if verb == "list" {
		var out respapi.SilencesResponse
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		printSilences(os.Stdout, out.Silences)
		return nil
	}
	var s silence.Silence
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	fmt.Printf("silence %s: %s until %s (%s)\n", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339), s.State(time.Now()))
	return nil
}
