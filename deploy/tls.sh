#!/usr/bin/env bash
# deploy/tls.sh [DIR]
#
# Makes the test PKI the secured listeners and their tests use, in DIR
# (default .data/tls at the repo root, git-ignored):
#   ca.crt ca.key            the test CA every test client trusts
#   server.crt server.key    server certificate for 127.0.0.1 and localhost
#   client.crt client.key    client certificate (CN agentwatch-client) for mutual TLS
#   other-ca.crt             a second CA nobody's certificates chain to:
#                            tests use it as a wrong trust anchor
# Keys are unencrypted PKCS#8 PEM (what Kafka's PEM keystores and
# ClickHouse's openSSL block read). Certificates live 30 days; the files are
# remade when missing or when the server certificate expires within a day,
# so running it again is quick and harmless. Never use this PKI outside tests.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DIR=${1:-$ROOT/.data/tls}
DAYS=30

log() { printf 'tls.sh: %s\n' "$*" >&2; }
command -v openssl >/dev/null 2>&1 || { log "openssl not found; apt-get install openssl"; exit 1; }

fresh() {
	local f
	for f in ca.crt ca.key server.crt server.key client.crt client.key other-ca.crt; do
		[ -s "$DIR/$f" ] || return 1
	done
	openssl x509 -checkend 86400 -noout -in "$DIR/server.crt" >/dev/null 2>&1
}
fresh && exit 0

mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# RSA rather than EC: the oldest server here (ClickHouse 18.16's Poco) is surest with it.
key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
selfsigned() { # name cn
	key "$1.key"
	openssl req -x509 -new -key "$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$1.crt" 2>/dev/null
}
leaf() { # name cn extfile-lines
	key "$1.key"
	openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$DAYS" \
		-extfile "$1.ext" -out "$1.crt" 2>/dev/null
}

selfsigned ca "agentwatch test CA"
selfsigned other-ca "agentwatch untrusted test CA"
leaf server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
leaf client agentwatch-client "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
chmod 0644 ./*.crt ./*.key # the clickhouse and test users read them
for f in ca.crt ca.key server.crt server.key client.crt client.key other-ca.crt; do
	mv -f "$f" "$DIR/$f"
done
log "made test CA and certificates in $DIR (valid $DAYS days)"
