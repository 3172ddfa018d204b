#!/usr/bin/env bash
# deploy/clickhouse.sh up|down|status|logs [-f]
#
# Runs the one local ClickHouse (Debian's 18.16) that development and CI use:
# native protocol on 127.0.0.1:9000 (user default, no password), the native
# protocol over TLS on 127.0.0.1:9440 (certificate from deploy/tls.sh; the
# password-protected user agentwatch of deploy/clickhouse/users.xml), HTTP on
# 127.0.0.1:8123. Every command is idempotent: `up` on a running server only
# checks it, unless its rendered config or certificate changed, which
# restarts it; `down` on a stopped one does nothing.
#
# Data, tmp, logs and the rendered config live in .data/clickhouse/ at the
# repo root (git-ignored), owned by the clickhouse user. When that user cannot
# reach the repo (a clone under /root, mode 700), we do NOT widen permissions
# on someone's home: data goes to /var/lib/agentwatch/clickhouse-<hash of the
# repo path> instead and .data/clickhouse becomes a symlink to it.
#
# Environment: CLICKHOUSE_START_TIMEOUT (seconds, default 60);
# CLICKHOUSE_TCP_PORT, CLICKHOUSE_TLS_PORT, CLICKHOUSE_HTTP_PORT (default
# 9000, 9440, 8123) move the listeners, e.g. for a second clone's server
# next to the first (each clone has its own data directory).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CONF_SRC="$ROOT/deploy/clickhouse"
LINK="$ROOT/.data/clickhouse"
HOST=127.0.0.1
PORT=${CLICKHOUSE_TCP_PORT:-9000}
TLS_PORT=${CLICKHOUSE_TLS_PORT:-9440}
HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
TLS_SRC="$ROOT/.data/tls"
CH_USER=clickhouse
SERVER_BIN=/usr/sbin/clickhouse-server
TIMEOUT=${CLICKHOUSE_START_TIMEOUT:-60}

log() { printf 'clickhouse.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root: it installs packages and starts the server as the $CH_USER user"

installed() {
	[ -x "$SERVER_BIN" ] && command -v clickhouse-client >/dev/null 2>&1 && id -u "$CH_USER" >/dev/null 2>&1
}

install_packages() {
	installed && return 0
	log "installing clickhouse-server and clickhouse-client from Debian"
	# Debian's postinst runs invoke-rc.d to start the packaged service on the
	# default config, which would take port 9000 with data in /var/lib. A
	# policy-rc.d that answers 101 ("action forbidden") stops that; we only
	# add one if the machine has none, and remove it afterwards.
	local policy=/usr/sbin/policy-rc.d added_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# temporary, from agentwatch deploy/clickhouse.sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		added_policy=1
	fi
	local rc=0 aptlog="$ROOT/.data/apt-clickhouse.log"
	mkdir -p "$ROOT/.data"
	{
		# The lock timeout lets us wait for another engineer's or script's
		# apt-get instead of failing on the dpkg lock.
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q update &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y \
				--no-install-recommends install clickhouse-server clickhouse-client
	} >"$aptlog" 2>&1 || rc=$?
	[ -z "$added_policy" ] || rm -f "$policy"
	if [ "$rc" -ne 0 ]; then
		tail -n 30 "$aptlog" >&2
		die "apt-get install clickhouse-server clickhouse-client failed (exit $rc, log in $aptlog); run 'apt-get update' and retry, or 'dpkg --configure -a' if dpkg was interrupted"
	fi
	# Should the packaged service have started anyway (a policy-rc.d that
	# allows it), stop it now: nothing of ours runs yet, and a half-started
	# server on the Debian config would hold our ports.
	if [ -x /etc/init.d/clickhouse-server ]; then
		/etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
	fi
	installed || die "packages installed but $SERVER_BIN, clickhouse-client or the $CH_USER user is missing"
}

# resolve_data sets DATA to the absolute data directory, creating the
# /var/lib fallback (and the .data/clickhouse symlink to it) when needed.
resolve_data() {
	mkdir -p "$ROOT/.data"
	if [ -L "$LINK" ]; then
		# Not readlink -f: that fails while the target's parent is missing.
		DATA=$(readlink "$LINK")
		mkdir -p "$DATA"
	elif runuser -u "$CH_USER" -- test -x "$ROOT/.data" 2>/dev/null || [ -d "$LINK" ]; then
		DATA="$LINK"
	else
		DATA="/var/lib/agentwatch/clickhouse-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
		log "$CH_USER cannot reach $ROOT (see: namei -l $ROOT); using $DATA, linked from $LINK"
		mkdir -p "$DATA"
		ln -sfn "$DATA" "$LINK"
	fi
	# 18.16 ignores --pid-file unless it daemonizes itself, but it always
	# writes "PID: n" to <path>/status (and holds a lock on it while up).
	STATUSFILE="$DATA/data/status"
	LAUNCHER_PIDFILE="$DATA/launcher.pid"
}

# server_pid prints the pid of our running server, or fails.
server_pid() {
	local pid
	pid=$(sed -n 's/^PID: *\([0-9][0-9]*\)$/\1/p' "$STATUSFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# The status file outlives the server, so its pid may have been
	# recycled: only trust it if it runs our config.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config-file=$DATA/etc/config.xml" || return 1
	echo "$pid"
}

answers() {
	clickhouse-client --host "$HOST" --port "$PORT" --query 'SELECT 1' >/dev/null 2>&1
}

version() {
	clickhouse-client --host "$HOST" --port "$PORT" --query 'SELECT version()' 2>/dev/null
}

# tls_answers checks that the secure native port completes a TLS handshake
# with a certificate the test CA vouches for: a listener alone would not
# show that the server loaded its certificate and key.
tls_answers() {
	timeout 5 openssl s_client -connect "$HOST:$TLS_PORT" -CAfile "$TLS_SRC/ca.crt" \
		-verify_return_error -brief </dev/null >/dev/null 2>&1
}

# render writes the server's config, users and TLS files into dir ($1), as
# the running server would read them from <data>/etc.
render() {
	local dir=$1
	mkdir -p "$dir/tls"
	sed -e "s|@CH_DATA@|$DATA|g" -e "s|@CH_TCP_PORT@|$PORT|g" -e "s|@CH_TLS_PORT@|$TLS_PORT|g" \
		-e "s|@CH_HTTP_PORT@|$HTTP_PORT|g" "$CONF_SRC/config.xml" >"$dir/config.xml"
	cp "$CONF_SRC/users.xml" "$dir/users.xml"
	cp "$TLS_SRC/server.crt" "$TLS_SRC/server.key" "$dir/tls/"
	chmod 700 "$dir/tls"
	chmod 600 "$dir/tls/server.key"
	chown -R "$CH_USER:$CH_USER" "$dir"
}

# stale prints what differs between the running server's files and a fresh
# render, or fails when nothing does.
stale() {
	local fresh f changed=
	fresh=$(mktemp -d)
	render "$fresh"
	for f in config.xml users.xml tls/server.crt tls/server.key; do
		cmp -s "$fresh/$f" "$DATA/etc/$f" || changed="$changed $f"
	done
	rm -rf "$fresh"
	[ -n "$changed" ] || return 1
	echo "${changed# }"
}

log_tail() {
	local f
	for f in "$DATA/log/clickhouse-server.err.log" "$DATA/log/stdout.log"; do
		[ -s "$f" ] || continue
		echo "---- tail of $f" >&2
		tail -n 40 "$f" >&2
	done
}

port_owner() {
	ss -Hltnp "sport = :$1" 2>/dev/null | head -n1
}

cmd_up() {
	install_packages
	resolve_data
	"$ROOT/deploy/tls.sh"
	local changed
	if server_pid >/dev/null && changed=$(stale); then
		# A server started before the TLS port or a user was added (or
		# with a certificate tls.sh has since renewed) would fail the
		# tests that need them: restart it on the new files.
		log "restarting: $changed changed since the server started"
		cmd_down >/dev/null
	fi
	if server_pid >/dev/null; then
		if answers && tls_answers; then
			echo "clickhouse $(version) already running (pid $(server_pid)) on $HOST:$PORT, data in $DATA"
			return 0
		fi
		log "server pid $(server_pid) is up but not answering yet; waiting"
	else
		local p owner
		for p in "$PORT" "$TLS_PORT" "$HTTP_PORT"; do
			owner=$(port_owner "$p")
			[ -z "$owner" ] || die "port $p is already taken by something else: $owner; stop it (or run '$0 down' if it is a ClickHouse of another clone)"
		done
		mkdir -p "$DATA"/{etc,data,tmp,log,user_files,format_schemas}
		render "$DATA/etc"
		chown "$CH_USER:$CH_USER" "$DATA" "$DATA"/{etc,data,tmp,log,user_files,format_schemas}
		# A machine rebuilt with a new clickhouse uid leaves old data owned
		# by a stranger; the server would fail on its first write.
		if [ -n "$(find "$DATA" -maxdepth 3 ! -user "$CH_USER" ! -name launcher.pid -print -quit)" ]; then
			chown -R "$CH_USER:$CH_USER" "$DATA"
		fi
		chmod 750 "$DATA"
		rm -f "$LAUNCHER_PIDFILE"
		# A fresh stdout.log, so a failed start shows only its own output.
		[ ! -f "$DATA/log/stdout.log" ] || mv -f "$DATA/log/stdout.log" "$DATA/log/stdout.log.1"
		# setsid + nohup + closed stdin: the server must outlive this shell,
		# its session and a CI step that waits on inherited file descriptors.
		(
			cd /
			exec setsid nohup runuser -u "$CH_USER" -- "$SERVER_BIN" \
				--config-file="$DATA/etc/config.xml" \
				</dev/null >>"$DATA/log/stdout.log" 2>&1
		) &
		echo $! >"$LAUNCHER_PIDFILE"
		log "started clickhouse-server (launcher pid $!), data in $DATA"
	fi

	# The same wait-or-give-up loop as kafka.sh's, kept in each script: the
	# readiness probe, the exit check and the messages differ, and each
	# script stays runnable on its own.
	local deadline=$((SECONDS + TIMEOUT)) launcher
	launcher=$(cat "$LAUNCHER_PIDFILE" 2>/dev/null || true)
	until answers && tls_answers; do
		if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null && ! server_pid >/dev/null; then
			log "clickhouse-server exited during start-up"
			log_tail
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "clickhouse-server did not answer on $HOST:$PORT and (TLS) $HOST:$TLS_PORT within ${TIMEOUT}s; stopping it"
			log_tail
			cmd_down >/dev/null 2>&1 || true
			exit 1
		fi
		sleep 0.5
	done
	echo "clickhouse $(version) running (pid $(server_pid || echo '?')) on $HOST:$PORT (tls $HOST:$TLS_PORT, http $HOST:$HTTP_PORT), data in $DATA"
}

# launcher_pid prints the pid of the setsid/runuser launcher of this
# clone's server, or fails. It leads its own process group (setsid), which
# holds the server too, so signalling -pid reaches a server that has not
# written its status file yet.
launcher_pid() {
	local pid
	pid=$(cat "$LAUNCHER_PIDFILE" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config-file=$DATA/etc/config.xml" || return 1
	echo "$pid"
}

# terminate sends SIGTERM to target (a pid, or -pgid), waits up to 30 s for
# pid to exit, then sends SIGKILL.
terminate() {
	local target=$1 pid=$2 _
	kill -TERM -- "$target" 2>/dev/null || return 0
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	log "pid $pid ignored SIGTERM for 30s; sending SIGKILL"
	kill -KILL -- "$target" 2>/dev/null || true
	sleep 0.5
}

cmd_down() {
	installed || { echo "clickhouse not installed, nothing to stop"; return 0; }
	resolve_data
	local pid launcher
	pid=$(server_pid) || pid=
	launcher=$(launcher_pid) || launcher=
	if [ -z "$pid" ] && [ -z "$launcher" ]; then
		echo "clickhouse not running"
		rm -f "$LAUNCHER_PIDFILE"
		return 0
	fi
	[ -z "$pid" ] || terminate "$pid" "$pid"
	# The launcher exits with the server; if it lingers (or the server never
	# got as far as its status file), stop its whole process group.
	launcher=$(launcher_pid) || launcher=
	[ -z "$launcher" ] || terminate "-$launcher" "$launcher"
	rm -f "$LAUNCHER_PIDFILE"
	echo "clickhouse stopped (was pid ${pid:-$launcher})"
}

cmd_status() {
	if ! installed; then
		echo "clickhouse not installed"
		return 3
	fi
	resolve_data
	local pid
	if ! pid=$(server_pid); then
		echo "clickhouse not running (data in $DATA)"
		return 3
	fi
	if answers && tls_answers; then
		echo "clickhouse $(version) running (pid $pid) on $HOST:$PORT (tls $HOST:$TLS_PORT, http $HOST:$HTTP_PORT), data in $DATA"
		return 0
	fi
	echo "clickhouse pid $pid is running but not answering on $HOST:$PORT or (TLS) $HOST:$TLS_PORT"
	return 1
}

cmd_logs() {
	installed || die "clickhouse not installed"
	resolve_data
	local files=()
	local f
	for f in "$DATA/log/clickhouse-server.log" "$DATA/log/clickhouse-server.err.log" "$DATA/log/stdout.log"; do
		[ -f "$f" ] && files+=("$f")
	done
	[ "${#files[@]}" -gt 0 ] || die "no logs yet in $DATA/log"
	if [ "${1:-}" = "-f" ]; then
		exec tail -n 50 -F "${files[@]}"
	fi
	tail -n 100 "${files[@]}"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
logs) cmd_logs "${2:-}" ;;
*)
	echo "usage: $0 up|down|status|logs [-f]" >&2
	exit 2
	;;
esac
