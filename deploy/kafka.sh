#!/usr/bin/env bash
# deploy/kafka.sh up|down|status|logs [-f]
#
# Runs the one local Apache Kafka (4.x, single-node KRaft) that development
# and CI use: PLAINTEXT on 127.0.0.1:9092 (no TLS, no auth), SASL_SSL on
# 127.0.0.1:9094 (TLS with the test PKI of deploy/tls.sh, then SASL PLAIN,
# SCRAM-SHA-256 or SCRAM-SHA-512 as the test user of deploy/kafka/sasl.env),
# controller on 127.0.0.1:9093, auto topic creation off. Every command is
# idempotent: `up` on a running broker only checks it (and restarts it when
# its rendered config changed), `down` on a stopped one does nothing.
#
# Everything lives in .data/kafka/ at the repo root (git-ignored):
#   libs/               broker classpath, fetched from Maven Central by
#                       `mvn dependency:copy-dependencies` on deploy/kafka/pom.xml
#   server.properties   rendered from deploy/kafka/server.properties.in
#   keystore.pem        the SASL_SSL listener's key and certificate
#   sasl.env            the test user (a copy of deploy/kafka/sasl.env)
#   sasl-password       its password alone, for kafka.sasl.password_file
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
SECURE=127.0.0.1:9094
PORTS=(9092 9093 9094)
TLS_DIR="$ROOT/.data/tls"
# shellcheck source=kafka/sasl.env
. "$SRC/sasl.env"
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

# render_config writes the broker config to $1, and the SASL_SSL
# listener's keystore and the test user's files next to it.
render_config() {
	mkdir -p "$DATA/log" "$DATA/meta"
	"$ROOT/deploy/tls.sh" "$TLS_DIR"
	(umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.crt" >"$DATA/keystore.pem.new") &&
		mv -f "$DATA/keystore.pem.new" "$DATA/keystore.pem"
	cp "$SRC/sasl.env" "$DATA/sasl.env"
	(umask 077 && printf '%s\n' "$KAFKA_SASL_PASSWORD" >"$DATA/sasl-password")
	sed -e "s|@KAFKA_DATA@|$DATA|g" -e "s|@TLS_DIR@|$TLS_DIR|g" \
		-e "s|@SASL_USERNAME@|$KAFKA_SASL_USERNAME|g" -e "s|@SASL_PASSWORD@|$KAFKA_SASL_PASSWORD|g" \
		"$SRC/server.properties.in" >"$1"
}

secure_ready() { # mechanism [timeout]
	"$WAIT_BIN" -q -brokers "$SECURE" -timeout "${2:-3s}" -tls-ca "$TLS_DIR/ca.crt" \
		-sasl "$1" -user "$KAFKA_SASL_USERNAME" -password-file "$DATA/sasl-password" 2>/dev/null
}

# ensure_users makes the test user able to log in with every mechanism.
# SCRAM credentials live in the cluster metadata; adding them through the
# admin API (on the PLAINTEXT listener) works alike on a fresh data dir and
# on one formatted before the SASL_SSL listener existed, and is idempotent.
ensure_users() {
	local m out
	for m in scram-sha-256 scram-sha-512; do
		secure_ready "$m" && continue
		log "adding the ${m^^} credential of user $KAFKA_SASL_USERNAME"
		# One mechanism per request: the broker refuses to alter one user's
		# credentials twice in the same request.
		out=$(java -cp "$LIBS/*" -Dlog4j2.configurationFile="$SRC/log4j2.properties" kafka.admin.ConfigCommand \
			--bootstrap-server "$BROKER" --alter --entity-type users --entity-name "$KAFKA_SASL_USERNAME" \
			--add-config "${m^^}=[password=$KAFKA_SASL_PASSWORD]" 2>&1) ||
			die "adding the ${m^^} credential failed: $out"
	done
	for m in plain scram-sha-256 scram-sha-512; do
		secure_ready "$m" 30s || die "the SASL_SSL listener on $SECURE refuses $KAFKA_SASL_USERNAME with $m; see '$0 logs'"
	done
}

java_cmd() {
	printf '%s\0' java "-Xms256m" "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Djava.net.preferIPv4Stack=true \
		"-Dlog4j2.configurationFile=$SRC/log4j2.properties" \
		-cp "$LIBS/*" "$@"
}

# format_storage writes meta.properties once, with the test user's SCRAM
# credentials in the first metadata records (ensure_users adds them to a
# data dir formatted without them). A data dir formatted for
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
		kafka.tools.StorageTool format --ignore-formatted -t "$id" -c "$CONF" \
		--add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]" \
		--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]" 2>&1) ||
		die "storage format failed: $out"
}

cmd_up() {
	java_ok || die "Java 17+ not found on PATH; install openjdk-17-jre-headless"
	command -v go >/dev/null 2>&1 || die "go not found on PATH; it builds the readiness checker"
	mkdir -p "$DATA/bin"
	fetch_libs
	build_waiter
	local pid
	render_config "$CONF.new"
	if pid=$(broker_pid) && ! cmp -s "$CONF.new" "$CONF"; then
		# A broker started before the SASL_SSL listener existed (or before
		# any other change of the template) is restarted on the new config.
		log "the broker config changed; restarting kafka (pid $pid)"
		cmd_down >/dev/null
	fi
	if pid=$(broker_pid); then
		rm -f "$CONF.new"
		if ready 5s; then
			ensure_users
			echo "kafka already running (pid $pid) on $BROKER and $SECURE, data in $DATA"
			return 0
		fi
		log "broker pid $pid is up but not ready yet; waiting"
	else
		local p owner
		for p in "${PORTS[@]}"; do
			owner=$(port_owner "$p")
			[ -z "$owner" ] || die "port $p is already taken by something else: $owner; stop it (or run '$0 down' in the clone that started it)"
		done
		mv -f "$CONF.new" "$CONF"
		format_storage
		[ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
		local -a cmd
		mapfile -d '' cmd < <(java_cmd kafka.Kafka "$CONF")
		# setsid + nohup + closed stdin: the broker must outlive this shell,
		# its session and a CI step that waits on inherited descriptors.
		# cwd is the data dir so that stray JVM files (hs_err) land there.
		# Every other inherited descriptor is closed too: a broker that kept,
		# say, the fd of a `flock` around this script would hold that lock
		# for as long as it runs.
		(
			cd "$DATA"
			for fd in /proc/$BASHPID/fd/*; do
				fd=${fd##*/}
				[ "$fd" -gt 2 ] 2>/dev/null && { eval "exec $fd>&-" 2>/dev/null || true; }
			done
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
	ensure_users
	echo "kafka $(kafka_version) running (pid $(broker_pid || echo '?')) on $BROKER (PLAINTEXT) and $SECURE (SASL_SSL), data in $DATA"
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
