// Command responder consumes anomalies from the anomalies topic in a
// consumer group and runs playbooks: Slack alerts for SOC analysts (one
// thread per agent incident), credential revocation and quarantine through
// guarded gateway adapters, evidence snapshots, webhooks and approvals, each
// audited. It also serves Slack's interactivity endpoint and the HTTP API.
// Its operator commands (run-playbook, restore, audit, verify, incidents,
// silence, outbox, false-positive) are in internal/responder/respctl, and
// preview in internal/responder/preview; this package only parses their
// arguments.
package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/preview"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

func main() { cli.Main(newRoot()) }

const outboxNote = `
With kafka.brokers set it goes through a running responder's API (responder.api_addr,
or --api), which has the instance holding the action act on it while the responders run;
the token in $RESPONDER_API_TOKEN needs can_repair_outbox. Otherwise it works on
responder.state_dir's outbox file, or through the API when a responder holds it.`

const stateNote = `
It works on responder.state_dir; when a responder runs on it, it goes through that
responder's HTTP API instead (responder.api_addr, token in $RESPONDER_API_TOKEN).`

func newRoot() *cobra.Command {
	root := cli.NewRoot("responder", "Run playbooks on the detector's anomalies: alerts, revocation, evidence",
		`responder consumes anomalies from kafka.anomalies_topic in a consumer group and
runs playbooks on them: Slack alerts for SOC analysts (one thread per agent
incident), credential revocation and quarantine through guarded gateway
adapters, evidence snapshots, webhooks and approvals, each audited. It serves
Slack's interactivity endpoint and the HTTP API. Run without a command, it runs
the consumer; the other commands are for operators (docs/responder.md).`)
	cli.ServiceCommand(root, runResponder)
	root.AddCommand(runPlaybookCommand(), restoreCommand(), auditCommand(), verifyCommand(),
		incidentsCommand(), silenceCommand(), outboxCommand(), falsePositiveCommand(), keygenCommand(), ledgerKeygenCommand(), ledgerResealCommand(), killSwitchCommand(), previewCommand())
	return root
}

func runResponder(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	fp := respsvc.Failpoints(log)
	r, err := respsvc.New(ctx, cfg, respsvc.Options{Log: log, Metrics: obs.NewRegistry(),
		BeforeAction: fp.BeforeAction, AfterAction: fp.AfterAction, BeforeCommit: fp.BeforeCommit})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx)
}

// operator loads the configuration and the operator's logger: the start
// of every operator command.
func operator(cmd *cobra.Command) (config.Config, *slog.Logger, error) {
	cfg, err := cli.LoadConfig(cmd)
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, cli.OperatorLogger(cmd, cfg, "responder"), nil
}

// operatorRunE is the RunE of an operator command: the flags it cannot
// run without (needs), then the configuration and the operator's logger,
// then run.
func operatorRunE(needs []string, run func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := required(cmd, needs...); err != nil {
			return err
		}
		cfg, log, err := operator(cmd)
		if err != nil {
			return err
		}
		return run(cmd, args, cfg, log)
	}
}

// required is a usage error naming the flags a command cannot run without.
func required(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if v, _ := cmd.Flags().GetString(n); v == "" {
			return cli.Usagef("%s needs --%s (see %s --help)", cmd.CommandPath(), n, cmd.CommandPath())
		}
	}
	return nil
}

// asUsage gives respctl's input mistakes the usage exit code.
func asUsage(err error) error {
	var ue *respctl.UsageError
	if errors.As(err, &ue) {
		return &cli.UsageError{Err: err}
	}
	return err
}

// The operator commands from here on are deliberately parallel cobra
// declarations: each has its own flags, required flags and respctl call,
// which is all that differs; what they share is operatorRunE, required and
// asUsage above.
func runPlaybookCommand() *cobra.Command {
	var o respctl.RunPlaybookOptions
	cmd := &cobra.Command{
		Use:     "run-playbook NAME --agent ID",
		Short:   "Run a playbook by hand on one agent (idempotent per --request-id)",
		Long:    "run-playbook runs the named playbook's steps on one agent, as if an anomaly had matched it." + stateNote,
		Example: "  responder run-playbook shadow-agent --agent billing-bot --reason 'ticket SEC-42' --dry-run",
		Args:    cli.ExactArgs(1, "the playbook's NAME"),
		RunE: operatorRunE([]string{"agent"}, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			o.Playbook = args[0]
			return respctl.RunPlaybook(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.AgentID, "agent", "", "the agent to act on (required)")
	f.BoolVar(&o.DryRun, "dry-run", false, "record what would be done; make no outbound call")
	f.StringVar(&o.Reason, "reason", "", "why, for the audit record")
	f.StringVar(&o.RequestID, "request-id", "", "idempotency key: the same one runs once (default: a new one)")
	f.StringVar(&o.API, "api", "", "the running responder's API base URL (default http://responder.api_addr)")
	return cmd
}

func killSwitchCommand() *cobra.Command {
	var o respctl.KillSwitchOptions
	cmd := &cobra.Command{
		Use:   "kill-switch on|off|status",
		Short: "Stop (on) or resume (off) automatic revocations on every instance, or show the switch",
		Long: `kill-switch engages or disengages the kill switch, audited, or prints its state.
With kafka.brokers set it writes the responder's global table, so every running
instance stops (or resumes) automatic revocations within about a second. In the
embedded mode it creates or removes responder.kill_switch_file. Either switch
engaged stops them.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off", "status"},
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			o.Action = args[0]
			return respctl.KillSwitch(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		}),
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why, for the audit record and the switch's record")
	return cmd
}

func restoreCommand() *cobra.Command {
	var o respctl.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore --incident ID --credential ID",
		Short: "Undo a revocation or quarantine",
		Args:  cli.NoArgs,
		RunE: operatorRunE([]string{"incident", "credential"}, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.Restore(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.IncidentID, "incident", "", "the incident whose revocation or quarantine to undo (required)")
	f.StringVar(&o.CredentialID, "credential", "", "the credential id (required; for a quarantined unregistered agent: agent:ID)")
	f.StringVar(&o.Reason, "reason", "", "why, for the audit record")
	return cmd
}

// auditCommand is deliberately parallel to detector's backfillCommand: both
// parse a --from/--to span with timeflag, with their own defaults and
// messages.
func auditCommand() *cobra.Command {
	var (
		o        respctl.AuditOptions
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit trail: who did what to which agent, when and why",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Filter.FromMs = time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
			if from != "" {
				t, err := timeflag.Parse(from)
				if err != nil {
					return cli.Usagef("--from: %v", err)
				}
				o.Filter.FromMs = t.UnixMilli()
			}
			if to != "" {
				t, err := timeflag.Parse(to)
				if err != nil {
					return cli.Usagef("--to: %v", err)
				}
				o.Filter.ToMs = t.UnixMilli()
			}
			if err := o.Filter.Validate(); err != nil {
				return cli.Usagef("%v", err)
			}
			cfg, log, err := operator(cmd)
			if err != nil {
				return err
			}
			return respctl.Audit(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Filter.AgentID, "agent", "", "only this agent")
	f.StringVar(&o.Filter.IncidentID, "incident", "", "only this incident")
	f.StringVar(&o.Filter.Action, "action", "", "only this action (a step kind, playbook, audit_query, checkpoint, or ask: the questions put to the inventory, findings, access, agent, route and events commands)")
	f.StringVar(&from, "from", "", "from this time (RFC 3339 or YYYY-MM-DD), inclusive; default 30 days ago")
	f.StringVar(&to, "to", "", "to this time, exclusive; default now")
	f.BoolVar(&o.JSON, "json", false, "print JSON instead of a table")
	f.IntVar(&o.Filter.Limit, "limit", audit.DefaultLimit, "at most this many records")
	return cmd
}

func verifyCommand() *cobra.Command {
	var o respctl.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the evidence bundles, their hash chain, the audit trail's hashes and the signed checkpoints",
		Args:  cli.NoArgs,
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.Verify(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		}),
	}
	cmd.Flags().StringVar(&o.Bundle, "bundle", "", "verify this bundle only (default: every bundle of the chain, and the chain)")
	cmd.Flags().StringArrayVar(&o.PublicKeys, "public-key", nil, "PEM public key the checkpoints must be signed with; repeat it for the old and new keys of a rotation (default: derived from responder.evidence.checkpoint_key_file)")
	return cmd
}

func keygenCommand() *cobra.Command {
	var o respctl.KeygenOptions
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an Ed25519 key that signs checkpoints of the evidence chain",
		Long: `keygen writes a new Ed25519 private key to FILE (mode 0600, PEM) and its public
key to FILE.pub. Point responder.evidence.checkpoint_key_file at FILE, and keep
a copy of FILE.pub off the responder's host: responder verify --public-key
checks the checkpoints with it. Existing files are never overwritten.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "out"); err != nil {
				return err
			}
			return respctl.Keygen(o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.Out, "out", "", "the private key's file (the public key goes to FILE.pub)")
	return cmd
}

func ledgerKeygenCommand() *cobra.Command {
	var o respctl.KeygenOptions
	cmd := &cobra.Command{
		Use:   "ledger-keygen --out FILE",
		Short: "Make the age key that encrypts the revocation ledger's kept credentials",
		Long: `ledger-keygen writes a new age X25519 identity to FILE (mode 0600), in the format
age-keygen writes, so a key from either tool works. Point responder.ledger_key_file
at FILE (or mount it as a secret): the revocation ledger then keeps the Kong keys it
will restore encrypted to it. Back the file up with the state directory's backups,
kept apart from them: the kept keys cannot be decrypted without it. An existing file
is never overwritten.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "out"); err != nil {
				return err
			}
			return respctl.LedgerKeygen(o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.Out, "out", "", "the key's file")
	return cmd
}

func ledgerResealCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ledger-reseal",
		Short: "Encrypt the Kong keys a revocation ledger from before encryption holds in plain text",
		Long: `ledger-reseal rewrites responder.state_dir's revocation ledger with every Kong key
that lines written before encryption hold in plain text encrypted with
responder.ledger_key; the other lines stay as they are. Stop the responder (and
any responder restore) first: it refuses while a responder holds the state
directory. The file is replaced atomically.`,
		Args: cli.NoArgs,
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return asUsage(respctl.LedgerReseal(cfg, cmd.OutOrStdout()))
		}),
	}
}

func incidentsCommand() *cobra.Command {
	var o respctl.IncidentsOptions
	cmd := &cobra.Command{
		Use:   "incidents",
		Short: "List the incidents the responder keeps, or one incident's anomalies",
		Args:  cli.NoArgs,
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.Incidents(cfg, o, cmd.OutOrStdout())
		}),
	}
	cmd.Flags().StringVar(&o.Incident, "incident", "", "list this incident's anomalies")
	return cmd
}

func silenceCommand() *cobra.Command {
	var api string
	var add respctl.SilenceAddOptions
	addCmd := &cobra.Command{
		Use:     "add --match MATCHERS --comment TEXT",
		Short:   "Silence the anomalies that match, for a while",
		Long:    "silence add mutes the anomalies whose labels match (docs/silences.md)." + stateNote,
		Example: `  responder silence add --match 'agent_id="a1",kind="behaviour"' --for 2h --comment 'batch job, ticket OPS-7'`,
		Args:    cli.NoArgs,
		RunE: operatorRunE([]string{"match", "comment"}, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			add.API = api
			return asUsage(respctl.SilenceAdd(cmd.Context(), cfg, add, cmd.OutOrStdout()))
		}),
	}
	addCmd.Flags().StringVar(&add.Matchers, "match", "", `matchers, e.g. 'agent_id="a1",kind=~"beh.*"' (docs/silences.md)`)
	addCmd.Flags().DurationVar(&add.For, "for", 2*time.Hour, "how long from now")
	addCmd.Flags().StringVar(&add.Comment, "comment", "", "why (required)")

	var list respctl.SilenceListOptions
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the active silences",
		Args:  cli.NoArgs,
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			list.API = api
			return respctl.SilenceList(cmd.Context(), cfg, list, cmd.OutOrStdout())
		}),
	}
	listCmd.Flags().BoolVar(&list.Expired, "expired", false, "list expired silences too")

	expireCmd := &cobra.Command{
		Use:   "expire ID",
		Short: "End a silence now",
		Args:  cli.ExactArgs(1, "the silence ID (responder silence list shows it)"),
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.SilenceExpire(cmd.Context(), cfg, respctl.SilenceExpireOptions{ID: args[0], API: api}, cmd.OutOrStdout())
		}),
	}
	silence := cli.Group(&cobra.Command{
		Use:   "silence",
		Short: "Add, list and expire silences",
		Long:  "silence manages silences: label matchers that mute matching anomalies for a while." + stateNote,
	}, addCmd, listCmd, expireCmd)
	silence.PersistentFlags().StringVar(&api, "api", "", "the running responder's API base URL (default http://responder.api_addr)")
	return silence
}

func outboxCommand() *cobra.Command {
	var list respctl.OutboxListOptions
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List open and parked actions",
		Args:  cli.NoArgs,
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.OutboxList(cmd.Context(), cfg, list, cmd.OutOrStdout())
		}),
	}
	listCmd.Flags().BoolVar(&list.All, "all", false, "list entries in every state")
	var requeue respctl.OutboxRequeueOptions
	requeueCmd := &cobra.Command{
		Use:   "requeue KEY",
		Short: "Run a parked or failed action again, now",
		Long:  "requeue makes a parked or failed action due again, now, audited." + outboxNote,
		Args:  cli.ExactArgs(1, "the action's KEY (responder outbox list shows it)"),
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			requeue.Key = args[0]
			return respctl.OutboxRequeue(cmd.Context(), cfg, requeue, cmd.OutOrStdout())
		}),
	}
	requeueCmd.Flags().StringVar(&requeue.RequestID, "request-id", "", "idempotency key sent to the API: the same one acts once (default: a new one)")
	var dismiss respctl.OutboxDismissOptions
	dismissCmd := &cobra.Command{
		Use:   "dismiss KEY --reason TEXT",
		Short: "Give up on a parked action",
		Long:  "dismiss marks a parked action failed, noting who and why, audited." + outboxNote,
		Args:  cli.ExactArgs(1, "the action's KEY (responder outbox list shows it)"),
		RunE: operatorRunE([]string{"reason"}, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			dismiss.Key = args[0]
			return respctl.OutboxDismiss(cmd.Context(), cfg, dismiss, cmd.OutOrStdout())
		}),
	}
	dismissCmd.Flags().StringVar(&dismiss.Reason, "reason", "", "why the action is dismissed (required)")
	dismissCmd.Flags().StringVar(&dismiss.RequestID, "request-id", "", "idempotency key sent to the API: the same one acts once (default: a new one)")
	group := cli.Group(&cobra.Command{
		Use:   "outbox",
		Short: "Inspect and repair the durable action queue",
		Long: `outbox lists the durable action queue and requeues or dismisses a parked action.
With kafka.brokers set, list reads every instance's actions from
kafka.responder_state_topic, and requeue and dismiss go through a running
responder's API, which hands them to the instance holding the action.`,
	}, listCmd, requeueCmd, dismissCmd)
	const apiUsage = "the running responder's API base URL (default http://responder.api_addr)"
	requeueCmd.Flags().StringVar(&requeue.API, "api", "", apiUsage)
	dismissCmd.Flags().StringVar(&dismiss.API, "api", "", apiUsage)
	return group
}

func falsePositiveCommand() *cobra.Command {
	var o respctl.FalsePositiveOptions
	cmd := &cobra.Command{
		Use:   "false-positive --incident ID --anomaly ID",
		Short: "Mark an anomaly a false positive, as the Slack button does",
		Long:  "false-positive silences the anomaly's pattern for that agent and sends the verdict to the detector." + stateNote,
		Args:  cli.NoArgs,
		RunE: operatorRunE([]string{"incident", "anomaly"}, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			return respctl.FalsePositive(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.IncidentID, "incident", "", "the incident (responder incidents lists them)")
	f.StringVar(&o.AnomalyID, "anomaly", "", "the anomaly id")
	f.StringVar(&o.API, "api", "", "the running responder's API base URL (default http://responder.api_addr)")
	return cmd
}

func previewCommand() *cobra.Command {
	var o preview.CommandOptions
	cmd := &cobra.Command{
		Use:   "preview ANOMALY.json [MORE.json…] [--out DIR]",
		Short: "Write the Slack messages some anomalies would get, as Block Kit JSON and an HTML page",
		Long: `preview runs anomaly records (docs/anomalies.md: one per file, a JSON array, or JSON
lines; "-" reads standard input) through the responder's engine with the playbooks
of responder.playbooks (or --playbooks), in a temporary state directory, and writes
what it would post to Slack into --out: messages.json, the Block Kit JSON of every
message as the channel ends up showing it (each top-level message after its updates,
then its thread), and preview.html, the same drawn as a page. Nothing is posted and
no gateway is called: revoke, throttle, quarantine and webhook steps run dry, and
approval requests stay unanswered. No Slack workspace is needed.`,
		Example: "  responder preview testdata/anomaly.json --out /tmp/preview\n  responder preview .data/embedded/detector/anomalies.jsonl --playbooks deploy/playbooks/default.yaml --registry .data/embedded/agents.yaml",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("%s needs at least one file of anomalies (or - for standard input) (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: operatorRunE(nil, func(cmd *cobra.Command, args []string, cfg config.Config, log *slog.Logger) error {
			o.Inputs, o.Stdin = args, cmd.InOrStdin()
			err := preview.Command(cmd.Context(), cfg, log, o, cmd.OutOrStdout())
			var ie *preview.InputError
			if errors.As(err, &ie) {
				return &cli.UsageError{Err: err}
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.Out, "out", "preview", "directory the preview is written to (created; files in it are replaced)")
	f.StringArrayVar(&o.Playbooks, "playbooks", nil, "playbook file or directory instead of responder.playbooks (repeat for several)")
	f.StringVar(&o.Registry, "registry", "", "agent registry file (agents.yaml), for playbooks that match on roles or labels")
	f.DurationVar(&o.WaitFor, "wait-for", 3*time.Second, "also wait, in real time, for the messages due within this long (a thread digest due in a few minutes); not for those due later, such as an approval's timeout")
	return cmd
}
