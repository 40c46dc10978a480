#!/usr/bin/env bash
# Installs or locates the peer brokers for bench/run.mjs and builds the load
# generator. A peer that cannot be installed is reported as MISSING (never
# skipped silently); run.mjs reports it again in its tables.
#
#   bash bench/setup.sh            # everything (rumqttd compiles for minutes)
#   SKIP_RUMQTTD=1 bash bench/setup.sh
#
# Idempotent: what is already there is only checked.
set -u
cd "$(dirname "$0")/.."
BENCH=bench
PEERS=$BENCH/peers
mkdir -p "$PEERS"

declare -A STATUS
as_root() { [ "$(id -u)" = 0 ]; }
apt_updated=0
apt_install() {
  as_root || return 1
  if [ $apt_updated = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

# --- load generator --------------------------------------------------------
if cargo build --release --quiet --manifest-path $BENCH/loadgen/Cargo.toml; then
  STATUS[loadgen]="ok: $BENCH/loadgen/target/release/fbroker-loadgen"
else
  STATUS[loadgen]="FAILED to build"
fi

# --- fbroker ----------------------------------------------------------------
if [ -f packages/fbroker/dist/cli/main.js ]; then
  STATUS[fbroker]="ok: packages/fbroker/dist/cli/main.js"
else
  STATUS[fbroker]="MISSING: packages/fbroker/dist/cli/main.js (run npm install at the repo root)"
fi

# --- Mosquitto 2 (Debian package) ---------------------------------------------
MOSQ=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
if [ -z "$MOSQ" ]; then
  echo "== installing mosquitto (apt)"
  apt_install mosquitto && MOSQ=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
fi
if [ -n "$MOSQ" ]; then
  STATUS[mosquitto]="ok: $MOSQ ($("$MOSQ" -h 2>/dev/null | head -1))"
else
  STATUS[mosquitto]="MISSING: apt-get install -y mosquitto failed (not root, or no package)"
fi

# --- rsvg-convert for the chart -------------------------------------------------
if ! command -v rsvg-convert >/dev/null; then
  echo "== installing librsvg2-bin (apt) for the PNG chart"
  apt_install librsvg2-bin fonts-dejavu-core
fi
if command -v rsvg-convert >/dev/null; then
  STATUS[rsvg-convert]="ok: $(command -v rsvg-convert)"
else
  STATUS[rsvg-convert]="MISSING: charts stay SVG (apt-get install -y librsvg2-bin)"
fi

# --- Aedes (npm), and ws for its WebSocket listeners ------------------------------
if [ -f $PEERS/node_modules/aedes/package.json ]; then
  STATUS[aedes]="ok: aedes $(node -p "require('./$PEERS/node_modules/aedes/package.json').version")"
else
  echo "== npm view aedes engines"
  engines=$(npm view aedes engines.node 2>/dev/null | tr -d '\n' || true)
  echo "   aedes wants node ${engines:-(unspecified)}; this is node $(node --version)"
  # Only the common ">=N" form is checked; anything else is left to npm.
  need=$(printf '%s' "$engines" | sed -n 's/^>= *\([0-9][0-9]*\).*/\1/p')
  have=$(node -p 'process.versions.node.split(".")[0]')
  if [ -n "$need" ] && [ "$have" -lt "$need" ]; then
    STATUS[aedes]="MISSING: aedes needs node $engines, this is node $(node --version)"
  elif npm install --prefix $PEERS --no-audit --no-fund aedes >/dev/null 2>&1 && [ -f $PEERS/node_modules/aedes/package.json ]; then
    STATUS[aedes]="ok: aedes $(node -p "require('./$PEERS/node_modules/aedes/package.json').version")"
  else
    STATUS[aedes]="MISSING: npm install --prefix $PEERS aedes failed"
  fi
fi
# ws (npm): Aedes' WebSocket listeners in bench/peers/aedes-server.mjs
# (fanin-ws, fanin-wss); without it those rows say "not supported".
if [ ! -f $PEERS/node_modules/ws/package.json ]; then
  echo "== npm install --prefix $PEERS ws"
  npm install --prefix $PEERS --no-audit --no-fund ws >/dev/null 2>&1 || true
fi
if [ -f $PEERS/node_modules/ws/package.json ]; then
  STATUS[ws]="ok: ws $(node -p "require('./$PEERS/node_modules/ws/package.json').version") (Aedes over WebSocket)"
else
  STATUS[ws]="MISSING: npm install --prefix $PEERS ws failed (Aedes rows of fanin-ws/fanin-wss: not supported)"
fi

# --- aedes-persistence-redis (npm): Aedes' Redis store, for the persist scenario ----
# The version range comes from the installed Aedes' own peerDependencies
# (aedes 1.2.0: ^11.2.1), so npm installs it next to that Aedes without
# --force or --legacy-peer-deps; its `engines` is checked like Aedes'.
APR=$PEERS/node_modules/aedes-persistence-redis/package.json
if [ -f $APR ]; then
  STATUS[aedes-persistence-redis]="ok: aedes-persistence-redis $(node -p "require('./$APR').version")"
elif [ ! -f $PEERS/node_modules/aedes/package.json ]; then
  STATUS[aedes-persistence-redis]="MISSING: needs aedes (see above)"
else
  range=$(node -p "(require('./$PEERS/node_modules/aedes/package.json').peerDependencies || {})['aedes-persistence-redis'] || ''")
  spec="aedes-persistence-redis${range:+@$range}"
  echo "== npm view $spec engines"
  engines=$(npm view "$spec" engines.node 2>/dev/null | tail -1 | sed "s/.*'\(.*\)'.*/\1/" | tr -d '\n' || true)
  echo "   $spec wants node ${engines:-(unspecified)}; this is node $(node --version)"
  need=$(printf '%s' "$engines" | sed -n 's/^>= *\([0-9][0-9]*\).*/\1/p')
  have=$(node -p 'process.versions.node.split(".")[0]')
  if [ -n "$need" ] && [ "$have" -lt "$need" ]; then
    STATUS[aedes-persistence-redis]="MISSING: $spec needs node $engines, this is node $(node --version)"
  elif npm install --prefix $PEERS --no-audit --no-fund "$spec" >/dev/null 2>&1 && [ -f $APR ]; then
    STATUS[aedes-persistence-redis]="ok: aedes-persistence-redis $(node -p "require('./$APR').version")"
  else
    STATUS[aedes-persistence-redis]="MISSING: npm install --prefix $PEERS $spec failed (persist scenario: Aedes row MISSING)"
  fi
fi

# --- redis-server (Debian package): the store of the persist scenario ----------------
# scripts/redis.sh starts one per broker run (and installs the package itself
# when run as root).
if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server (apt)"
  apt_install --no-install-recommends redis-server && { command -v systemctl >/dev/null && systemctl stop redis-server >/dev/null 2>&1 || true; }
fi
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  STATUS[redis-server]="ok: $(redis-server --version | cut -d' ' -f1-3)"
else
  STATUS[redis-server]="MISSING: apt-get install -y redis-server failed (not root, or no package): persist scenario cannot run"
fi

# --- openssl: scripts/gencert.sh makes the certificates of fanin-tls/fanin-wss --------
if ! command -v openssl >/dev/null; then
  echo "== installing openssl (apt)"
  apt_install openssl
fi
if command -v openssl >/dev/null; then
  STATUS[openssl]="ok: $(openssl version)"
else
  STATUS[openssl]="MISSING: no openssl (fanin-tls/fanin-wss cannot make certificates)"
fi

# --- rumqttd (crates.io) -----------------------------------------------------------
RUMQ=$PEERS/rumqttd/bin/rumqttd
if [ -x $RUMQ ]; then
  STATUS[rumqttd]="ok: $($RUMQ --version 2>/dev/null || echo rumqttd)"
elif [ "${SKIP_RUMQTTD:-0}" = 1 ]; then
  STATUS[rumqttd]="MISSING: skipped (SKIP_RUMQTTD=1)"
else
  # Not --locked: rumqttd 0.20.0's lock file pins metrics 0.22.1, which newer
  # rustc rejects (E0521); the newest semver-compatible releases build.
  echo "== cargo install rumqttd --root $PEERS/rumqttd (compiles for several minutes)"
  if cargo install rumqttd --root $PEERS/rumqttd >$PEERS/rumqttd-install.log 2>&1 && [ -x $RUMQ ]; then
    STATUS[rumqttd]="ok: $($RUMQ --version 2>/dev/null || echo rumqttd)"
  else
    STATUS[rumqttd]="MISSING: cargo install rumqttd failed (see $PEERS/rumqttd-install.log)"
  fi
fi

# --- mqtt-benchmark (Go, third party: the crosscheck scenario) -----------------------
# github.com/krylovsk/mqtt-benchmark v0.2.0, installed with `go install` into
# bench/peers/go/bin. Where the module proxy does not serve it, it is MISSING.
MQB_VERSION=v0.2.0
GO_DIR=$PEERS/go
MQB=$GO_DIR/bin/mqtt-benchmark
if [ -x $MQB ]; then
  STATUS[mqtt-benchmark]="ok: $MQB, $(cat $GO_DIR/bin/mqtt-benchmark.version 2>/dev/null || echo "version unknown")"
elif ! command -v go >/dev/null; then
  STATUS[mqtt-benchmark]="MISSING: no go toolchain (crosscheck scenario is skipped)"
else
  echo "== go install github.com/krylovsk/mqtt-benchmark@$MQB_VERSION"
  mkdir -p $GO_DIR/bin
  gobin=$(cd $GO_DIR/bin && pwd)
  export GOPATH="$(cd $GO_DIR && pwd)/path" GOFLAGS=-modcacherw
  if GOBIN=$gobin go install github.com/krylovsk/mqtt-benchmark@$MQB_VERSION >$GO_DIR/install.log 2>&1 && [ -x $MQB ]; then
    echo "$MQB_VERSION, go install" >$GO_DIR/bin/mqtt-benchmark.version
    STATUS[mqtt-benchmark]="ok: $MQB, $MQB_VERSION, go install"
  else
    STATUS[mqtt-benchmark]="MISSING: go install github.com/krylovsk/mqtt-benchmark@$MQB_VERSION failed (see $GO_DIR/install.log)"
  fi
fi

# --- mqtt-benchmark, Rust (crates.io, third party: the crosscheck scenario) -----------
# The crate `mqtt-benchmark` 0.2.4 (github.com/chenquan/mqtt-benchmark, rumqttc
# client), installed with `cargo install --locked` into
# bench/peers/rust-mqtt-benchmark. Not the Go tool of the same name above.
RMQB_VERSION=0.2.4
RMQB=$PEERS/rust-mqtt-benchmark/bin/mqtt-benchmark
if [ -x $RMQB ] && [ "$(cat $PEERS/rust-mqtt-benchmark/version 2>/dev/null)" = "$RMQB_VERSION" ]; then
  STATUS[mqtt-benchmark-rs]="ok: $RMQB, crate mqtt-benchmark $RMQB_VERSION"
else
  echo "== cargo install mqtt-benchmark@$RMQB_VERSION --locked --root $PEERS/rust-mqtt-benchmark (compiles for a few minutes)"
  if cargo install mqtt-benchmark --version $RMQB_VERSION --locked --root $PEERS/rust-mqtt-benchmark >$PEERS/rust-mqtt-benchmark-install.log 2>&1 && [ -x $RMQB ]; then
    echo "$RMQB_VERSION" >$PEERS/rust-mqtt-benchmark/version
    STATUS[mqtt-benchmark-rs]="ok: $RMQB, crate mqtt-benchmark $RMQB_VERSION"
  else
    STATUS[mqtt-benchmark-rs]="MISSING: cargo install mqtt-benchmark@$RMQB_VERSION failed (see $PEERS/rust-mqtt-benchmark-install.log)"
  fi
fi

echo
echo "== setup summary"
rc=0
for k in loadgen fbroker mosquitto aedes ws aedes-persistence-redis redis-server rumqttd mqtt-benchmark mqtt-benchmark-rs openssl rsvg-convert; do
  printf '  %-24s %s\n' "$k" "${STATUS[$k]}"
done
case "${STATUS[loadgen]}" in ok*) ;; *) rc=1 ;; esac
case "${STATUS[fbroker]}" in ok*) ;; *) rc=1 ;; esac
exit $rc
