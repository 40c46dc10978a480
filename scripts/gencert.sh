#!/usr/bin/env bash
# Creates a throw-away certificate authority, a server certificate and a
# client certificate for local TLS testing. Nothing it writes belongs in
# git: the keys are generated fresh on every machine.
#
#   scripts/gencert.sh OUT_DIR [SERVER_NAME ...] [--client-cn NAME]
#
# OUT_DIR receives ca.pem/ca.key, server.pem/server.key (SANs: localhost,
# 127.0.0.1, ::1 and any SERVER_NAME given) and client.pem/client.key
# (subject CN from --client-cn, default "fbroker-client").
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [SERVER_NAME ...] [--client-cn NAME]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1; shift
client_cn=fbroker-client
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --client-cn) [ $# -ge 2 ] || usage; client_cn=$2; shift 2 ;;
    -*) usage ;;
    *) names+=("$1"); shift ;;
  esac
done
command -v openssl >/dev/null || { echo "gencert: openssl is not installed (Debian: apt-get install openssl)" >&2; exit 1; }

mkdir -p "$out"
cd "$out"
umask 077

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san="$san,IP:$n"; else san="$san,DNS:$n"; fi
done

# EC P-256 keys: fast handshakes, accepted by every client we test with.
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=fbroker test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null

issue() { # name cn extensions
  local name=$1 cn=$2 ext=$3
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key.sec1" 2>/dev/null
  # PKCS#8 is what every TLS stack reads.
  openssl pkcs8 -topk8 -nocrypt -in "$name.key.sec1" -out "$name.key"
  rm -f "$name.key.sec1"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

issue server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san"
issue client "$client_cn" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "gencert: wrote ca.pem, server.pem, server.key, client.pem, client.key to $(pwd)"
