#!/usr/bin/env bash
# deploy/kafka.sh up|down|status|logs [-f]
#
# Runs the one local Apache Kafka (4.x, single-node KRaft) that development
# and CI use: PLAINTEXT on 127.0.0.1:9092, controller on 127.0.0.1:9093, no
# auth, auto topic creation off. Every command is idempotent: `up` on a
# running broker only checks it, `down` on a stopped one does nothing.
#
# Everything lives in .data/kafka/ at the repo root (git-ignored):
#   libs/               broker classpath, fetched from Maven Central by
#                       `mvn dependency:copy-dependencies` on deploy/kafka/pom.xml
#   server.properties   rendered from deploy/kafka/server.properties.in
#   log/, meta/         partition data and the KRaft metadata log
#   server.log          broker output (previous run's in server.log.1)
#   kafka.pid           broker pid
#
# Environment: KAFKA_START_TIMEOUT (seconds, default 90), KAFKA_HEAP (default 1G).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SRC="$ROOT/deploy/kafka"
DATA="$ROOT/.data/kafka"
LIBS="$DATA/libs"
CONF="$DATA/server.properties"
PIDFILE="$DATA/kafka.pid"
LOG="$DATA/server.log"
WAIT_BIN="$DATA/bin/kafkawait"
BROKER=127.0.0.1:9092
PORTS=(9092 9093)
TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP=${KAFKA_HEAP:-1G}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

java_ok() {
	command -v java >/dev/null 2>&1 || return 1
	local v
	v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
	[ -n "$v" ] && [ "$v" -ge 17 ]
}

# The stamp ties libs/ to the exact pom it was fetched with, so editing the
# pom (a version bump) refetches instead of running a stale classpath.
pom_stamp() { sha256sum "$SRC/pom.xml" | cut -c1-16; }

fetch_libs() {
	local want
	want=$(pom_stamp)
	if [ -f "$LIBS/.stamp" ] && [ "$(cat "$LIBS/.stamp")" = "$want" ]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "mvn not found; install Maven (apt-get install maven) and retry"
	log "fetching Kafka broker jars from Maven Central into $LIBS"
	rm -rf "$LIBS.tmp"
	# Fetch into a temp dir and rename, so an interrupted fetch never leaves
	# a half classpath that the stamp check would trust.
	mkdir -p "$DATA"
	if ! mvn -q -B -Dstyle.color=never -f "$SRC/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$DATA/mvn.log" 2>&1; then
		tail -n 30 "$DATA/mvn.log" >&2
		die "mvn dependency:copy-dependencies failed (full output in $DATA/mvn.log); check that Maven Central is reachable"
	fi
	ls "$LIBS.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "fetch finished but no kafka_2.13 jar in $LIBS.tmp"
	echo "$want" >"$LIBS.tmp/.stamp"
	rm -rf "$LIBS"
	mv "$LIBS.tmp" "$LIBS"
}

build_waiter() {
	# go build is incremental, so this is quick after the first time.
	(cd "$ROOT" && go build -o "$WAIT_BIN" ./cmd/kafkawait) ||
		die "go build ./cmd/kafkawait failed"
}

# broker_pid prints the pid of this clone's broker, or fails. A pid file can
# outlive its process and the pid be recycled, so we only trust a process
# that runs kafka.Kafka on our config.
is_ours() {
	tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "kafka.Kafka $CONF"
}
broker_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid" || return 1
	echo "$pid"
}

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | head -n1; }

log_tail() {
	[ -s "$LOG" ] || return 0
	echo "---- tail of $LOG" >&2
	tail -n 40 "$LOG" >&2
}

ready() { "$WAIT_BIN" -q -brokers "$BROKER" -timeout "${1:-3s}" 2>/dev/null; }

render_config() {
	mkdir -p "$DATA/log" "$DATA/meta"
	sed "s|@KAFKA_DATA@|$DATA|g" "$SRC/server.properties.in" >"$CONF"
}

java_cmd() {
	printf '%s\0' java "-Xms256m" "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Djava.net.preferIPv4Stack=true \
		"-Dlog4j2.configurationFile=$SRC/log4j2.properties" \
		-cp "$LIBS/*" "$@"
}

# format_storage writes meta.properties once. A data dir formatted for
# another cluster id would make the broker refuse to start, so the id is
# kept next to the data and reused.
format_storage() {
	[ -f "$DATA/meta/meta.properties" ] && return 0
	local id
	if [ -s "$DATA/cluster.id" ]; then
		id=$(cat "$DATA/cluster.id")
	else
		id=$(java -cp "$LIBS/*" -Dlog4j2.configurationFile="$SRC/log4j2.properties" \
			kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
		[ -n "$id" ] || die "kafka.tools.StorageTool random-uuid printed nothing"
		echo "$id" >"$DATA/cluster.id"
	fi
	log "formatting storage in $DATA (cluster id $id)"
	local out
	out=$(java -cp "$LIBS/*" -Dlog4j2.configurationFile="$SRC/log4j2.properties" \
		kafka.tools.StorageTool format --ignore-formatted -t "$id" -c "$CONF" 2>&1) ||
		die "storage format failed: $out"
}

cmd_up() {
	java_ok || die "Java 17+ not found on PATH; install openjdk-17-jre-headless"
	command -v go >/dev/null 2>&1 || die "go not found on PATH; it builds the readiness checker"
	mkdir -p "$DATA/bin"
	fetch_libs
	build_waiter
	local pid
	if pid=$(broker_pid); then
		if ready 5s; then
			echo "kafka already running (pid $pid) on $BROKER, data in $DATA"
			return 0
		fi
		log "broker pid $pid is up but not ready yet; waiting"
	else
		local p owner
		for p in "${PORTS[@]}"; do
			owner=$(port_owner "$p")
			[ -z "$owner" ] || die "port $p is already taken by something else: $owner; stop it (or run '$0 down' in the clone that started it)"
		done
		render_config
		format_storage
		[ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
		local -a cmd
		mapfile -d '' cmd < <(java_cmd kafka.Kafka "$CONF")
		# setsid + nohup + closed stdin: the broker must outlive this shell,
		# its session and a CI step that waits on inherited descriptors.
		# cwd is the data dir so that stray JVM files (hs_err) land there.
		(
			cd "$DATA"
			exec setsid nohup "${cmd[@]}" </dev/null >>"$LOG" 2>&1
		) &
		pid=$!
		# setsid only forks when the caller leads a process group; if it did,
		# $! is not the JVM, so find the JVM by its command line.
		local _
		for _ in $(seq 1 20); do
			is_ours "$pid" && break
			local p2
			for p2 in /proc/[0-9]*; do
				is_ours "${p2#/proc/}" && { pid=${p2#/proc/}; break 2; }
			done
			sleep 0.1
		done
		echo "$pid" >"$PIDFILE"
		log "started kafka (pid $pid), waiting up to ${TIMEOUT}s for it to answer on $BROKER"
	fi

	# The same wait-or-give-up loop as clickhouse.sh's, kept in each script:
	# the probe, the exit check and the messages differ, and each script
	# stays runnable on its own.
	local deadline=$((SECONDS + TIMEOUT))
	until ready 2s; do
		if ! broker_pid >/dev/null; then
			log "kafka exited during start-up"
			log_tail
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "kafka did not answer a Metadata request on $BROKER within ${TIMEOUT}s; stopping it"
			log_tail
			cmd_down >/dev/null 2>&1 || true
			exit 1
		fi
		sleep 0.5
	done
	echo "kafka $(kafka_version) running (pid $(broker_pid || echo '?')) on $BROKER, data in $DATA"
}

kafka_version() {
	local j
	for j in "$LIBS"/kafka_2.13-*.jar; do
		j=${j##*/kafka_2.13-}
		echo "${j%.jar}"
		return
	done
}

cmd_down() {
	local pid
	if ! pid=$(broker_pid); then
		echo "kafka not running"
		rm -f "$PIDFILE"
		return 0
	fi
	kill -TERM "$pid"
	# A controlled shutdown of a KRaft combined node takes a few seconds.
	local _
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "kafka (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$PIDFILE"
	echo "kafka stopped"
}

cmd_status() {
	local pid
	if ! pid=$(broker_pid); then
		echo "kafka not running"
		return 3
	fi
	if [ -x "$WAIT_BIN" ] && ready 3s; then
		echo "kafka $(kafka_version) running (pid $pid) on $BROKER, ready"
		return 0
	fi
	echo "kafka running (pid $pid) on $BROKER, NOT answering Metadata yet"
	return 1
}

cmd_logs() {
	[ -f "$LOG" ] || die "no log at $LOG; has '$0 up' ever run?"
	if [ "${1:-}" = "-f" ]; then
		exec tail -n 100 -F "$LOG"
	fi
	tail -n 200 "$LOG"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
logs) shift; cmd_logs "$@" ;;
*)
	echo "usage: $0 up|down|status|logs [-f]" >&2
	exit 2
	;;
esac
