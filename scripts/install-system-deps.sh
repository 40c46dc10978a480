#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing:
# mosquitto-clients (mosquitto_pub/_sub interop tests), mosquitto (the peer
# broker some tests and the benchmarks compare against), redis-server (auth
# source tests, started by scripts/redis.sh on a loopback port), chromium
# (the browser test drives it headless with playwright-core over the ws
# listener), plus paho-mqtt from PyPI for the Python interop test.
set -euo pipefail
missing=()
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
python3 -c 'import paho.mqtt.client' >/dev/null 2>&1 || python3 -m pip install -q 'paho-mqtt>=2.1,<3'
# Debian's mosquitto package may start a system broker on 1883, which the
# README's quick start needs. Stop only that service, never other
# mosquitto processes (benchmarks run their own).
if command -v systemctl >/dev/null 2>&1; then systemctl stop mosquitto >/dev/null 2>&1 || true; fi
if [ -x /etc/init.d/mosquitto ]; then /etc/init.d/mosquitto stop >/dev/null 2>&1 || true; fi
