#!/usr/bin/env bash
# deploy/services.sh up|down|status — the local services the distributed mode
# and the integration tests use: Kafka (deploy/kafka.sh) and ClickHouse
# (deploy/clickhouse.sh), both on 127.0.0.1 only, data under .data/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cmd=${1:-status}
case "$cmd" in
up)
	"$here/clickhouse.sh" up
	"$here/kafka.sh" up
	;;
down)
	rc=0
	"$here/kafka.sh" down || rc=$?
	"$here/clickhouse.sh" down || rc=$?
	exit $rc
	;;
status)
	rc=0
	"$here/kafka.sh" status || rc=$?
	"$here/clickhouse.sh" status || rc=$?
	exit $rc
	;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
