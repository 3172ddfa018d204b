#!/usr/bin/env bash
# deploy/test-tools.sh
#
# Installs the Debian packages that integration tests drive as real Kafka
# clients: kcat (produce/consume from the shell) and rsyslog with its omkafka
# output module (a real log shipper publishing to Kafka); ca-certificates,
# whose bundle goes into the container image (make image); and systemd,
# whose systemd-analyze checks the units in deploy/systemd (no systemd runs
# here: only the analyzer is used). Idempotent and
# silent when everything is there; runs `apt-get update` at most once, and
# only when something is missing.
#
# rsyslog is installed as a program only: tests start their own rsyslogd
# with their own config. The packaged service is kept from starting (there
# is no systemd here, but Debian's postinst would try the init script).
set -euo pipefail

PKGS=(kcat rsyslog rsyslog-kafka ca-certificates systemd)

log() { printf 'test-tools.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PKGS[@]}"; do
	installed "$p" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "must run as root to install: ${missing[*]}"

log "installing ${missing[*]}"
# A policy-rc.d answering 101 ("action forbidden") keeps the postinst from
# starting rsyslog as a system service; only added if the machine has none.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# temporary, from agentwatch deploy/test-tools.sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	added_policy=1
fi
rc=0
{
	# The lock timeout waits for a concurrent apt-get (another script,
	# another engineer) instead of failing on the dpkg lock.
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq update >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq -y \
			--no-install-recommends install "${missing[@]}" >/dev/null
} || rc=$?
[ -n "$added_policy" ] && rm -f "$policy"
[ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed (exit $rc); run 'apt-get update' and retry, or 'dpkg --configure -a' if dpkg was interrupted"

for p in "${PKGS[@]}"; do
	installed "$p" || die "$p still not installed after apt-get"
done
# Whatever the policy, make sure no packaged rsyslogd keeps running: tests
# start their own, and a system one would hold /dev/log.
if [ -x /etc/init.d/rsyslog ]; then
	/etc/init.d/rsyslog stop >/dev/null 2>&1 || true
fi
log "installed: $(command -v kcat) $(command -v rsyslogd)"
