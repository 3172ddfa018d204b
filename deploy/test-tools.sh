#!/usr/bin/env bash
# deploy/test-tools.sh
#
# Installs the Debian packages that integration tests drive as real Kafka
# clients: kcat (produce/consume from the shell) and rsyslog with its omkafka
# output module (a real log shipper publishing to Kafka), Prometheus
# (the server scrapes the services over TLS; promtool checks and tests
# deploy/prometheus/rules.yml), ca-certificates (its bundle goes into the
# container image, make image) and systemd (only its systemd-analyze, which
# checks the units in deploy/systemd; no systemd runs here) and chromium
# (headless, the web console's browser tests drive it). Idempotent
# and silent when everything is there; runs `apt-get update` at most once,
# and only when something is missing.
#
# rsyslog and prometheus are installed as programs only: tests start their
# own rsyslogd and prometheus with their own config. The packaged services
# are kept from starting (there is no systemd here, but Debian's postinst
# would try the init scripts).
set -euo pipefail

PKGS=(kcat rsyslog rsyslog-kafka prometheus ca-certificates systemd chromium)

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
# starting rsyslog or prometheus as a system service; only added if the
# machine has none.
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
# Nor a packaged prometheus: it would hold port 9090 and scrape nothing of ours.
if [ -x /etc/init.d/prometheus ]; then
	/etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
log "installed: $(command -v kcat) $(command -v rsyslogd) $(command -v prometheus) $(command -v promtool) $(command -v chromium)"
