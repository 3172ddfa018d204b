// Command agentwatch is the one-process entry point and the toolbox:
//
//	agentwatch demo              ingest, detector and responder in one process on
//	                             the embedded default, fed by the built-in simulator
//	agentwatch simulate          simulated gateway access-log lines on stdout
//	agentwatch bench ingest|detector|responder
//	                             end-to-end measurements on the real Kafka and ClickHouse
//	agentwatch inventory agents|routes|agent-routes
//	                             the agent and route inventory
//	agentwatch findings          least-privilege and lifecycle findings
//	agentwatch access            who called routes with a tag or matching a template
//	agentwatch agent ID          one agent's profile and timeline
//	agentwatch route TEMPLATE    one route's callers over time
//	agentwatch events            the events behind an answer
//	agentwatch report --period 2026-11
//	                             the period's visibility and compliance report (HTML, PDF)
//	agentwatch config reference  every configuration key, documented
package main

import (
	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

func main() { cli.Main(newRoot()) }

func newRoot() *cobra.Command {
	root := cli.NewRoot("agentwatch", "Watch AI agents as they call APIs, and stop the ones that misbehave",
		`agentwatch is the one-process entry point: "agentwatch demo" runs ingest, the
detector and the responder in one process with no external service. The same
binary simulates gateway traffic, runs the end-to-end benchmarks, and documents
every configuration key. It answers the visibility questions (inventory, findings,
access, agent, route, events) and writes the periodic report from the embedded data
dir, or from ClickHouse in the distributed mode. The services of the distributed mode
are the ingest, detector and responder binaries.`)
	root.AddCommand(demoCommand(), simulateCommand(), benchCommand(),
		inventoryCommand(), findingsCommand(), accessCommand(), agentCommand(), routeCommand(), eventsCommand(),
		reportCommand())
	return root
}
