#!/usr/bin/env bash
# Starts or stops a throwaway Redis server for tests.
#
#   scripts/redis.sh start PORT DIR   # redis-server on 127.0.0.1:PORT, no persistence,
#                                     # daemonized; pidfile and log in DIR; waits for PING
#   scripts/redis.sh stop PORT DIR    # shuts it down (SHUTDOWN NOSAVE, then the pidfile's process)
#
# REDIS_DURABLE=1 starts it with appendonly yes, appendfsync always instead
# (the append-only file in DIR survives a stop/start on the same DIR), for
# tests where Redis itself must not lose an acknowledged write.
#
# When redis-server is missing, `start` installs the Debian package
# redis-server (as root, after apt-get update) or fails saying so.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop PORT DIR" >&2
  exit 2
}

[ $# -eq 3 ] || usage
action=$1
port=$2
dir=$3
case "$port" in '' | *[!0-9]*) echo "redis.sh: PORT must be a number, got '$port'" >&2; exit 2 ;; esac
pidfile="$dir/redis-$port.pid"
logfile="$dir/redis-$port.log"

ensure_installed() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "redis.sh: redis-server is not installed and installing it needs root: apt-get install redis-server" >&2
    exit 1
  fi
  echo "redis.sh: installing redis-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The Debian package starts a system server on 6379; tests use their own.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
}

ping() {
  [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" = "PONG" ]
}

start() {
  ensure_installed
  mkdir -p "$dir"
  if ping; then
    echo "redis.sh: something already answers on 127.0.0.1:$port" >&2
    exit 1
  fi
  local durability=(--appendonly no)
  if [ "${REDIS_DURABLE:-0}" = 1 ]; then durability=(--appendonly yes --appendfsync always --appendfilename "appendonly-$port.aof" --appenddirname "aof-$port"); fi
  redis-server \
    --bind 127.0.0.1 \
    --port "$port" \
    --save '' \
    "${durability[@]}" \
    --daemonize yes \
    --pidfile "$pidfile" \
    --logfile "$logfile" \
    --dir "$dir"
  for _ in $(seq 1 100); do
    if ping; then exit 0; fi
    sleep 0.1
  done
  echo "redis.sh: redis-server on 127.0.0.1:$port did not answer PING within 10 s; log: $logfile" >&2
  [ -f "$logfile" ] && tail -n 20 "$logfile" >&2
  exit 1
}

stop() {
  local pid=""
  [ -f "$pidfile" ] && pid=$(cat "$pidfile" 2>/dev/null || true)
  # SHUTDOWN NOSAVE skips RDB snapshots only; an append-only file is kept.
  redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  if [ -n "$pid" ]; then
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
