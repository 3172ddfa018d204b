// Command agentwatch is the one-process entry point:
//
//	agentwatch demo       run ingest, detector and responder in one process on
//	                      the embedded default, fed by the built-in simulator
//	agentwatch simulate   print simulated gateway access-log lines to stdout,
//	                      e.g. `agentwatch simulate --rate 2000 | kcat -P -b 127.0.0.1:9092 -t agentwatch.raw`
//	agentwatch bench ingest   measure end-to-end ingest against real Kafka and ClickHouse
//	agentwatch bench detector measure the detector on a real events topic, next to consume-only
package main

import (
	"fmt"
	"os"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

const usage = `usage: agentwatch <command> [flags]

commands:
  demo       the whole job in one process: simulator → ingest → detector → responder
  simulate   write simulated gateway access-log lines to stdout
  bench ingest   measure ingest end to end against the real Kafka and ClickHouse,
             next to the consume-only and insert-only limits
  bench detector the detector service end to end on a real events topic,
             next to the consume-only rate, with close → publish latency
  help       this text

Run "agentwatch <command> --help" for a command's flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(cli.ExitUsage)
	}
	var err error
	switch os.Args[1] {
	case "demo":
		err = runDemo(os.Args[2:])
	case "simulate":
		err = simulate(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "help", "-h", "--help":
		fmt.Println(usage)
		return
	default:
		err = cli.Usagef("unknown command %q\n%s", os.Args[1], usage)
	}
	cli.Exit("agentwatch", err)
}
