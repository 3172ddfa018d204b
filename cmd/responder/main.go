// Command responder consumes anomalies from the anomalies topic in a
// consumer group and runs playbooks: Slack alerts for SOC analysts (one
// thread per agent incident), credential revocation and quarantine through
// guarded gateway adapters, evidence snapshots, webhooks and approvals, each
// audited. It also serves Slack's interactivity endpoint and the HTTP API.
//
//	responder [run]                                   the consumer (default)
//	responder run-playbook NAME --agent ID [--dry-run] [--reason TEXT]
//	responder restore --incident ID --credential ID   undo a revocation or quarantine
//	responder audit [--agent ID] [--incident ID] [--from T] [--to T] [--json]
//	responder verify [--bundle ID]                    check evidence bundles and the chain
//	responder incidents                               list the incidents the responder keeps
//	responder silence add|list|expire                 manage silences (docs/silences.md)
//	responder outbox list|requeue|dismiss             inspect and repair the action queue
//	responder false-positive --incident ID --anomaly ID   as the Slack button
package main

import (
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

func main() { cli.Exit("responder", run(os.Args[1:])) }

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runResponder(args[1:])
		case "run-playbook":
			return runPlaybook(args[1:])
		case "restore":
			return runRestore(args[1:])
		case "audit":
			return runAudit(args[1:])
		case "verify":
			return runVerify(args[1:])
		case "incidents":
			return runIncidents(args[1:])
		case "silence":
			return runSilence(args[1:])
		case "outbox":
			return runOutbox(args[1:])
		case "false-positive":
			return runFalsePositive(args[1:])
		case "help", "-h", "--help":
			os.Stdout.WriteString(usage)
			return nil
		}
	}
	return runResponder(args)
}

const usage = `usage:
  responder [run] [--config FILE] [--KEY VALUE ...]
  responder run-playbook NAME --agent ID [--dry-run] [--reason TEXT] [--request-id ID]
  responder restore --incident ID --credential ID [--reason TEXT]
  responder audit [--agent ID] [--incident ID] [--from TIME] [--to TIME] [--json]
  responder verify [--bundle ID]
  responder incidents
  responder silence add --match MATCHERS --for 2h --comment TEXT | list [--expired] | expire ID
  responder outbox list [--all] | requeue KEY | dismiss KEY --reason TEXT
  responder false-positive --incident ID --anomaly ID

run-playbook, restore, incidents, silence and false-positive work on
responder.state_dir: when a responder runs on it, run-playbook, silence and
false-positive go through its HTTP API instead
(responder.api_addr, token in $RESPONDER_API_TOKEN).
TIME is RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01).
Every config key is also a flag; see docs/responder.md.
`
