#!/usr/bin/env bash
# Profiles fbroker under the fan-in load and summarises where its CPU goes:
# share of samples in JS frames (node's own JS, our TypeScript) versus Rust
# (the fbroker addon: engine, tokio, std), libc and the kernel, and the top
# Rust symbols by self time.
#
#   bash bench/profile-fanin.sh [--rate 100k] [--secs 10] [--publishers 10] [--payload 256]
#                               [--freq 999] [--out FILE] [--cpu-prof]
#
# The broker (the fbroker CLI, node started with --perf-basic-prof so JIT
# code has names) runs pinned to core 0; the load generator (N publishers →
# 1 subscriber on bench/+/x, QoS 0, fixed offered rate) and perf run on core 1.
# perf samples the broker process (all threads) with the software cpu-clock
# event for as long as the load runs. Where perf is missing it is installed
# (apt, as root); where it cannot sample in this machine, --cpu-prof is used
# instead: node --cpu-prof on the broker, which sees the JS thread only.
#
# Writes the Markdown summary to bench/results/<date>-fanin-profile.md (or
# --out) and prints it. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=100k SECS=10 PUBS=10 PAYLOAD=256 FREQ=999 MODE=perf
OUT=bench/results/$(date -u +%F)-fanin-profile.md
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --secs) SECS=$2; shift 2 ;;
    --publishers) PUBS=$2; shift 2 ;;
    --payload) PAYLOAD=$2; shift 2 ;;
    --freq) FREQ=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cpu-prof) MODE=cpuprof; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile-fanin.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

CLI=packages/fbroker/bin/fbroker.js
LOADGEN=bench/loadgen/target/release/fbroker-loadgen
[ -f packages/fbroker/dist/cli/main.js ] || { echo "fbroker is not built (npm install / npm run build)" >&2; exit 1; }
cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
PIN0=() PIN1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi

# --- perf available and able to sample here? ---------------------------------------
if [ $MODE = perf ]; then
  if ! command -v perf >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== installing linux-perf (apt)" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf; } >/dev/null 2>&1 || true
  fi
  if ! command -v perf >/dev/null; then
    echo "note: perf not available: falling back to node --cpu-prof (JS thread only)" >&2; MODE=cpuprof
  elif ! perf record -q -e cpu-clock -g -o /dev/null -- true >/dev/null 2>&1; then
    echo "note: perf cannot sample here: falling back to node --cpu-prof (JS thread only)" >&2; MODE=cpuprof
  fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fbroker-profile-XXXXXX")
BROKER_PID='' PERF_PID=''
cleanup() {
  # Only what this script started, by PID.
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || true
  [ -n "$BROKER_PID" ] && kill -KILL "$BROKER_PID" 2>/dev/null || true
  [ -n "$BROKER_PID" ] && rm -f "/tmp/perf-$BROKER_PID.map"
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
printf '{"max_inflight_messages": 20, "max_queued_messages": 1000, "max_connections": 0}\n' >"$TMP/fbroker.json"
# --perf-basic-prof also turns on V8's code-event log: keep it in the temp dir.
NODE_FLAGS=(--perf-basic-prof --logfile="$TMP/v8.log" --no-logfile-per-isolate)
[ $MODE = cpuprof ] && NODE_FLAGS=(--cpu-prof --cpu-prof-dir "$TMP/cpuprof")
BROKER_CMD=(node "${NODE_FLAGS[@]}" $CLI start --host 127.0.0.1 --port "$PORT" --log-level warn --config "$TMP/fbroker.json")

# exec keeps the PID: $! is node's own PID.
( ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; exec "${PIN0[@]}" "${BROKER_CMD[@]}" ) >"$TMP/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 200); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  kill -0 $BROKER_PID 2>/dev/null || { echo "broker exited:" >&2; cat "$TMP/broker.log" >&2; exit 1; }
  sleep 0.1
done
sleep 0.5

cpu_secs() { # utime + stime of all threads, seconds
  awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"
}

echo "== profiling fbroker (pid $BROKER_PID, $MODE) under fan-in: $PUBS publishers → 1 subscriber, QoS 0, $PAYLOAD B, $RATE msg/s for $SECS s" >&2
if [ $MODE = perf ]; then
  "${PIN1[@]}" perf record -q -e cpu-clock -F "$FREQ" -g -p $BROKER_PID -o "$TMP/perf.data" >"$TMP/perf.log" 2>&1 &
  PERF_PID=$!
  sleep 1 # let perf attach to every thread
fi
BUILD="git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes'); addon $(cd packages/binding && ls -l --time-style=+'%F %T' *.node 2>/dev/null | awk '{print $NF", "$5" B, built "$6" "$7}')"
CPU0=$(cpu_secs $BROKER_PID) T0=$(date +%s.%N)
LG_CMD=("${PIN1[@]}" $LOADGEN fanin --host 127.0.0.1 --port "$PORT" --publishers "$PUBS" --payload "$PAYLOAD" --rate "$RATE" --duration-secs "$SECS" --drain-max-secs 2)
timeout $((SECS + 60)) "${LG_CMD[@]}" >"$TMP/loadgen.json" 2>"$TMP/loadgen.err" || { echo "load generator failed:" >&2; cat "$TMP/loadgen.err" "$TMP/loadgen.json" >&2; exit 1; }
CPU1=$(cpu_secs $BROKER_PID) T1=$(date +%s.%N)
if [ $MODE = perf ]; then
  kill -INT $PERF_PID; wait $PERF_PID || true; PERF_PID=''
fi
kill -TERM $BROKER_PID
for _ in $(seq 100); do kill -0 $BROKER_PID 2>/dev/null || break; sleep 0.1; done
kill -0 $BROKER_PID 2>/dev/null && { echo "broker did not stop on SIGTERM; killed" >&2; kill -KILL $BROKER_PID; }
wait $BROKER_PID 2>/dev/null || true

node -e '
const [lgFile, cpu0, cpu1, t0, t1, mode, freq, rate, pubs, payload, secs, brokerCmd, lgCmd, command, build] = process.argv.slice(1)
const lg = JSON.parse(require("fs").readFileSync(lgFile, "utf8"))
const os = require("os")
const f = (x) => Math.round(x).toLocaleString("en-US")
const l = lg.latency_us || {}
console.log(JSON.stringify({
  date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
  command,
  load: `fan-in: ${pubs} publishers (topics bench/<i>/x) → 1 subscriber on bench/+/x, QoS 0, ${payload} B payload, ${rate} msg/s offered for ${secs} s. \`${lgCmd}\``,
  broker: `\`${brokerCmd}\` (pinned to core 0; config max_inflight_messages 20, max_queued_messages 1000); ${build}`,
  profiler: mode === "perf" ? `perf record -e cpu-clock -F ${freq} -g -p PID (pinned to core 1), for the whole load-generator run` : "node --cpu-prof (JS thread only), stopped with SIGTERM",
  brokerCores: (cpu1 - cpu0) / (t1 - t0),
  deliveredPct: lg.delivered_pct,
  loadgen: `offered ${f(lg.offered_rate ?? 0)} msg/s, delivered ${f(lg.delivered_rate ?? 0)} msg/s (${lg.delivered_pct} %), latency p50 ${l.p50} µs, p99 ${l.p99} µs` + (lg.last_error ? `; ${lg.last_error}` : ""),
  machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}; node ${process.version}; ${os.release()}`,
}))' "$TMP/loadgen.json" "$CPU0" "$CPU1" "$T0" "$T1" $MODE "$FREQ" "$RATE" "$PUBS" "$PAYLOAD" "$SECS" \
  "${PIN0[*]} ${BROKER_CMD[*]}" "${LG_CMD[*]}" "bash bench/profile-fanin.sh --rate $RATE --secs $SECS --publishers $PUBS --payload $PAYLOAD" "$BUILD" >"$TMP/meta.json"

mkdir -p "$(dirname "$OUT")"
if [ $MODE = perf ]; then
  # perf-<pid>.map (written by --perf-basic-prof) names the JIT frames.
  perf script -i "$TMP/perf.data" -F comm,tid,ip,sym,dso >"$TMP/perf.txt" 2>"$TMP/perf-script.log"
  node bench/profile-summary.mjs --perf-script "$TMP/perf.txt" --pid $BROKER_PID --meta "$TMP/meta.json" >"$OUT"
else
  prof=$(ls "$TMP"/cpuprof/*.cpuprofile 2>/dev/null | head -1)
  [ -n "$prof" ] || { echo "no .cpuprofile written (did the broker exit cleanly?)" >&2; exit 1; }
  node bench/profile-summary.mjs --cpuprofile "$prof" --meta "$TMP/meta.json" >"$OUT"
fi
cat "$OUT"
echo >&2
echo "summary written to $OUT" >&2
