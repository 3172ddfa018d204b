package respctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

// The silence commands work on the global table in the distributed mode.
// In the embedded mode they work on the state directory's file when no
// responder holds it, else through the running responder's API
// (RESPONDER_API_TOKEN, a token with can_silence). Each option's API is
// that responder's base URL; "" means http://responder.api_addr.

// SilenceAddOptions describe a new silence.
type SilenceAddOptions struct {
	// Matchers, e.g. `agent_id="a1",kind=~"beh.*"` (docs/silences.md).
	Matchers string
	// For is how long from now.
	For     time.Duration
	Comment string
	API     string
}

// SilenceListOptions say which silences to list.
type SilenceListOptions struct {
	// Expired lists expired silences too.
	Expired bool
	API     string
}

// SilenceExpireOptions name the silence to end now.
type SilenceExpireOptions struct {
	ID  string
	API string
}

// SilenceAdd adds a silence, audits it, and writes it to w. Matchers the
// local store cannot parse are a *UsageError.
func SilenceAdd(ctx context.Context, cfg config.Config, o SilenceAddOptions, w io.Writer) error {
	return withSilences(ctx, cfg, o.API, func(api *apiClient) error {
		return callSilence(ctx, api, w, http.MethodPost, "/v1/silences", map[string]string{"matchers": o.Matchers, "duration": o.For.String(), "comment": o.Comment})
	}, func(st *silence.Store) error {
		me := Operator()
		ms, err := silence.ParseMatchers(o.Matchers)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--match: %w", err)}
		}
		now := time.Now()
		s, err := st.Add(ctx, silence.Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(o.For), CreatedBy: "cli:" + me.Name, Comment: o.Comment})
		if err != nil {
			return err
		}
		if err := auditSilence(ctx, cfg, me, "added silence "+s.ID+": "+silence.FormatMatchers(s.Matchers), o.Comment); err != nil {
			return err
		}
		fmt.Fprintf(w, "silence %s: %s until %s\n", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339))
		return nil
	})
}

// SilenceList writes the active (and with o.Expired, the expired)
// silences to w as a table.
func SilenceList(ctx context.Context, cfg config.Config, o SilenceListOptions, w io.Writer) error {
	return withSilences(ctx, cfg, o.API, func(api *apiClient) error {
		path := "/v1/silences"
		if o.Expired {
			path += "?expired=1"
		}
		b, err := api.call(ctx, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		var out respapi.SilencesResponse
		if err := json.Unmarshal(b, &out); err != nil {
			return err
		}
		printSilences(w, out.Silences)
		return nil
	}, func(st *silence.Store) error {
		printSilences(w, st.List(o.Expired))
		return nil
	})
}

// SilenceExpire ends a silence now, audits it, and writes a line to w.
func SilenceExpire(ctx context.Context, cfg config.Config, o SilenceExpireOptions, w io.Writer) error {
	return withSilences(ctx, cfg, o.API, func(api *apiClient) error {
		return callSilence(ctx, api, w, http.MethodDelete, "/v1/silences/"+o.ID, nil)
	}, func(st *silence.Store) error {
		me := Operator()
		s, err := st.Expire(ctx, o.ID, "cli:"+me.Name, time.Now())
		if err != nil {
			return err
		}
		if err := auditSilence(ctx, cfg, me, "expired silence "+s.ID, ""); err != nil {
			return err
		}
		fmt.Fprintf(w, "silence %s expired\n", s.ID)
		return nil
	})
}

// withSilences runs local on the state directory's silences, which it opens
// and closes, or viaAPI on the client of the running responder that holds
// them (openSilences).
//
// In the distributed mode the silences live in the global table, which
// this command writes directly: every running instance applies the
// change as soon as it reads it.
func withSilences(ctx context.Context, cfg config.Config, base string, viaAPI func(*apiClient) error, local func(*silence.Store) error) error {
	if cfg.Distributed() {
		g, err := openGlobal(ctx, cfg)
		if err != nil {
			return err
		}
		defer g.Close()
		return local(g.Rules.Silences)
	}
	st, api, err := openSilences(cfg, base)
	if err != nil {
		return err
	}
	if api != nil {
		return viaAPI(api)
	}
	defer st.Close()
	return local(st)
}

// callSilence sends an add or expire to the responder's API and writes the
// silence it answers with to w.
func callSilence(ctx context.Context, api *apiClient, w io.Writer, method, path string, body any) error {
	b, err := api.call(ctx, method, path, body)
	if err != nil {
		return err
	}
	return printAPISilence(w, b)
}

// openSilences opens the state directory's silences, or, when a running
// responder holds them, returns the client of its API instead.
func openSilences(cfg config.Config, base string) (*silence.Store, *apiClient, error) {
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		return nil, nil, err
	}
	st, err := silence.Open(filepath.Join(cfg.Responder.StateDir, respond.SilencesFile), silence.Options{})
	if errors.Is(err, silence.ErrInUse) {
		api, err := newAPIClient(cfg, base, "can_silence")
		if err != nil {
			return nil, nil, err
		}
		return nil, api, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return st, nil, nil
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

// printAPISilence writes the silence the API answered an add or expire
// with.
func printAPISilence(w io.Writer, b []byte) error {
	var s silence.Silence
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	fmt.Fprintf(w, "silence %s: %s until %s (%s)\n", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339), s.State(time.Now()))
	return nil
}
