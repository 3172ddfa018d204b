package respctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// openGlobal opens the distributed mode's global table for a command run
// by hand: it reads the table to its end, so what it prints and what it
// writes is against every instance's current state.
func openGlobal(ctx context.Context, cfg config.Config) (*respsvc.Global, error) {
	log := slog.New(slog.DiscardHandler)
	sec, err := kafka.Connect(ctx, cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	return respsvc.OpenGlobal(ctx, cfg, sec, log, nil, nil, nil, nil, nil)
}

// KillSwitchOptions say what `responder kill-switch` does.
type KillSwitchOptions struct {
	// Action is on, off or status.
	Action string
	// Reason is why, for the audit record and the switch's record.
	Reason string
}

// KillSwitch engages (on) or disengages (off) the kill switch, or prints
// its state (status). In the distributed mode it writes the global table,
// which every running instance follows: within about a second no
// automatic revocation starts anywhere. In the embedded mode it creates or
// removes responder.kill_switch_file. on and off are audited.
func KillSwitch(ctx context.Context, cfg config.Config, log *slog.Logger, o KillSwitchOptions, w io.Writer) error {
	if o.Action != "on" && o.Action != "off" && o.Action != "status" {
		return &UsageError{Err: fmt.Errorf("want on, off or status, got %q", o.Action)}
	}
	file := cfg.Responder.KillSwitchFile
	fileOn := file != "" && revoke.FileSwitch(file).Engaged()
	if !cfg.Distributed() {
		if file == "" {
			return errors.New("no kill switch to set: the embedded mode's switch is responder.kill_switch_file, and it is not set")
		}
		switch o.Action {
		case "status":
			fmt.Fprintf(w, "kill switch: %s (file %s)\n", onOff(fileOn), file)
			return nil
		case "on":
			if err := os.WriteFile(file, []byte(o.Reason+"\n"), 0o600); err != nil {
				return fmt.Errorf("engage the kill switch: %w", err)
			}
		case "off":
			if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("disengage the kill switch: %w", err)
			}
		}
		return auditSwitch(ctx, cfg, log, o, w, "file "+file)
	}
	g, err := openGlobal(ctx, cfg)
	if err != nil {
		return err
	}
	defer g.Close()
	sw := g.Rules.Switch
	if o.Action == "status" {
		st := sw.State()
		fmt.Fprintf(w, "kill switch (global table): %s", onOff(st.Engaged))
		if st.By != "" {
			fmt.Fprintf(w, ", set by %s at %s", audit.TerminalSafe(st.By, 80), st.At.UTC().Format(time.RFC3339))
			if st.Reason != "" {
				fmt.Fprintf(w, ": %s", audit.TerminalSafe(st.Reason, 200))
			}
		}
		fmt.Fprintln(w)
		if file != "" {
			fmt.Fprintf(w, "kill switch file %s on this host: %s\n", file, onOff(fileOn))
		}
		return nil
	}
	me := Operator()
	if err := sw.Set(ctx, revoke.SwitchState{Engaged: o.Action == "on", By: "cli:" + me.Name, Reason: o.Reason, At: time.Now()}); err != nil {
		return err
	}
	return auditSwitch(ctx, cfg, log, o, w, "global table "+cfg.Kafka.ResponderGlobalTopic)
}

func auditSwitch(ctx context.Context, cfg config.Config, log *slog.Logger, o KillSwitchOptions, w io.Writer, where string) error {
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("the kill switch is %s, but the audit record failed: %w", o.Action, err)
	}
	defer closeAudit()
	detail := "kill switch engaged (" + where + ")"
	if o.Action == "off" {
		detail = "kill switch disengaged (" + where + ")"
	}
	if err := al.Append(ctx, audit.Record{Actor: Operator(), Action: "kill_switch", Why: o.Reason, Result: audit.ResultOK, Detail: detail}); err != nil {
		return fmt.Errorf("the kill switch is %s, but the audit record failed: %w", o.Action, err)
	}
	fmt.Fprintln(w, detail)
	return nil
}

func onOff(b bool) string {
	if b {
		return "engaged"
	}
	return "disengaged"
}
