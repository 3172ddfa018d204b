// Command detector consumes canonical agent events from the events topic
// in a consumer group, scores each agent's event-time windows against its
// baseline, applies the registry and route rules, and writes explained
// anomalies to the anomalies topic and ClickHouse.
//
//	detector [run]                          the consumer (default)
//	detector backfill --from T --to T       build baselines from stored events
//	detector backfill --file raw.log ...    … or from a file of raw gateway logs
//	detector eval nab --data DIR --out DIR  score the Numenta Anomaly Benchmark
//	detector eval scenarios                 labeled agent-attack scenarios
package main

import (
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

func main() { cli.Exit("detector", run(os.Args[1:])) }

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runDetector(args[1:])
		case "backfill":
			return runBackfill(args[1:])
		case "eval":
			return runEval(args[1:])
		case "help", "-h", "--help":
			os.Stdout.WriteString(usage)
			return nil
		}
	}
	return runDetector(args)
}

const usage = `usage:
  detector [run] [--config FILE] [--KEY VALUE ...]
  detector backfill --from TIME --to TIME [--job NAME] [--file RAW_LOG] [--config FILE] [--KEY VALUE ...]

  detector eval nab --data NAB_DIR --out DIR [--only category/file.csv,...]
  detector eval scenarios [--seed 1,2] [--agents 200] [--history-days 14] [--test-days 3]

TIME is RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01).
Every config key is also a flag; see the README's configuration reference.
`
