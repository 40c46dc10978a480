#!/usr/bin/env node
// Benchmark runner: compares fbroker with peer MQTT brokers in the same run.
//
//   node bench/run.mjs [--quick|--full] [--brokers fbroker,mosquitto,aedes,rumqttd]
//                      [--scenarios fanin,fanout,roundtrip,idle,connrate,crosscheck|fanin-tls,fanin-ws,fanin-wss|persist|all] [--no-pin]
//                      [--wait-quiet SECS]  (before each run, wait up to SECS for other load < 0.3 cores)
//                      [--redis-core 1|0|none]  (persist: the core redis-server is pinned to; default 1, the generator's)
//
// For each scenario and each broker: start the broker on a free loopback port
// (pinned to core 0), run bench/loadgen (pinned to core 1), sample the
// broker's CPU time and RSS from /proc, stop the broker. Prints one Markdown
// table per scenario variant and writes bench/results/<date>[-quick].{md,json,png}.
// The crosscheck scenario drives the brokers with two third-party tools
// (mqtt-benchmark in Go, and the unrelated crate mqtt-benchmark in Rust) and
// with bench/loadgen shaped like them (10 publishers, no subscriber). fanin-tls, fanin-ws and
// fanin-wss (not in the default set) run the fan-in sweep over plain TCP and
// over each of those transports, broker by broker, and report each
// transport's cost relative to TCP. persist (not in the default set): QoS 1
// publishes into offline persistent sessions with Redis persistence (fbroker
// and Aedes + aedes-persistence-redis), each broker on a fresh redis-server
// started by the runner (scripts/redis.sh), whose CPU is sampled as well.
// Node built-ins only. See bench/README.md for the method.

import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const BENCH = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.dirname(BENCH)
const LOADGEN_MANIFEST = path.join(BENCH, 'loadgen', 'Cargo.toml')
const LOADGEN = path.join(BENCH, 'loadgen', 'target', 'release', 'fbroker-loadgen')
const PEERS = path.join(BENCH, 'peers')
const HOST = '127.0.0.1'
const ALL_BROKERS = ['fbroker', 'mosquitto', 'aedes', 'rumqttd']
const DEFAULT_SCENARIOS = ['fanin', 'fanout', 'roundtrip', 'idle', 'connrate', 'crosscheck']
// Transport variants of fanin: `fanin-<t>` runs the sweep over TCP and over <t>.
const TRANSPORT_SCENARIOS = { 'fanin-tls': 'tls', 'fanin-ws': 'ws', 'fanin-wss': 'wss' }
// Scenarios outside the default set (slow, or needing more than the brokers).
const EXTRA_SCENARIOS = ['persist']
const ALL_SCENARIOS = [...DEFAULT_SCENARIOS, ...Object.keys(TRANSPORT_SCENARIOS), ...EXTRA_SCENARIOS]
// persist: the per-session queue limit of both brokers (fbroker
// max_queued_messages, Aedes + aedes-persistence-redis maxSessionDelivery),
// far above what a run queues, so nothing is dropped.
const PERSIST_QUEUE_LIMIT = 10_000_000
const REDIS_SH = path.join(ROOT, 'scripts', 'redis.sh')
const TRANSPORT_NAMES = { tcp: 'TCP', tls: 'TLS', ws: 'WebSocket', wss: 'WebSocket over TLS' }
const WS_PATH = '/mqtt'
// Third-party load tools for the crosscheck scenario (bench/setup.sh installs them).
const MQTT_BENCHMARK = path.join(PEERS, 'go', 'bin', 'mqtt-benchmark')
const RUST_MQTT_BENCHMARK = path.join(PEERS, 'rust-mqtt-benchmark', 'bin', 'mqtt-benchmark')
const TOOLS = {
  'mqtt-benchmark': {
    bin: MQTT_BENCHMARK,
    about: 'github.com/krylovsk/mqtt-benchmark, Go, Eclipse Paho client',
    version: () => (fs.existsSync(MQTT_BENCHMARK + '.version') ? fs.readFileSync(MQTT_BENCHMARK + '.version', 'utf8').trim() : 'version unknown'),
  },
  'mqtt-benchmark-rs': {
    bin: RUST_MQTT_BENCHMARK,
    about: 'crates.io crate mqtt-benchmark, github.com/chenquan/mqtt-benchmark, Rust, rumqttc client',
    version: () => {
      const f = path.join(PEERS, 'rust-mqtt-benchmark', 'version')
      return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : 'version unknown'
    },
  },
}

// ---------------------------------------------------------------- options

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    brokers: { type: 'string', default: ALL_BROKERS.join(',') },
    scenarios: { type: 'string', default: DEFAULT_SCENARIOS.join(',') },
    'no-pin': { type: 'boolean', default: false },
    'wait-quiet': { type: 'string', default: '0' },
    // persist: the core redis-server is pinned to (the load generator's by
    // default, so the broker keeps a core to itself); `none` leaves it unpinned.
    'redis-core': { type: 'string', default: '1' },
    'out-dir': { type: 'string', default: path.join(BENCH, 'results') },
    'out-name': { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (opts.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 8).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n')
  process.exit(0)
}
if (opts.quick && opts.full) die('--quick and --full are exclusive')
const PROFILE = opts.quick ? 'quick' : 'full'
const brokers = list(opts.brokers, ALL_BROKERS, 'broker')
const scenarios = opts.scenarios.trim() === 'all' ? ALL_SCENARIOS : list(opts.scenarios, ALL_SCENARIOS, 'scenario')
const PIN = !opts['no-pin'] && os.availableParallelism() >= 2 && has('taskset')

function list(text, allowed, what) {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean)
  for (const i of items) if (!allowed.includes(i)) die(`unknown ${what} "${i}" (known: ${allowed.join(', ')})`)
  return items
}
function die(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`)
  process.exit(2)
}
function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}
function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return r.status === 0 ? (r.stdout || r.stderr).trim() : null
}

// ---------------------------------------------------------------- scenarios
//
// Each scenario has one variant per table. `args` go to the load generator.
// Metrics: [label, direction ('up' = higher is better, 'down' = lower is
// better, null = informational), extractor(run) → number|null, chart?].

const METRICS = {
  'fanin-sweep': (v) => [
    // 5th element: is the value only a lower bound? (the sweep never failed)
    // 6th: text shown when there is no value (no step was sustained)
    ['max sustained msg/s', 'up', (r) => r.lg.max_sustained_rate, true, (r) => r.lg.stop_reason === 'top of range', () => `none (< ${v.firstRate})`],
    [`p50 µs @${v.firstRate}`, 'down', (r) => step0(r)?.latency_us?.p50, false],
    [`p99 µs @${v.firstRate}`, 'down', (r) => step0(r)?.latency_us?.p99, true],
    [`CPU µs/msg @${v.firstRate}`, 'down', (r) => cpuPer(r, 'step0', step0(r)?.delivered), true],
    ['peak RSS MB', 'down', (r) => mb(r.rssPeakKb), false],
    ['p99 @max sustained', 'text', (r) => {
      const st = (r.lg.steps || []).filter((x) => x.sustained).pop()
      return st?.latency_us?.p99 != null ? `${fmt(st.latency_us.p99)} µs` : null
    }, false],
    ['sweep stopped by', 'text', (r) => r.lg.stop_reason, false],
  ],
  fanout: () => [
    ['delivered msg/s', 'up', (r) => r.lg.delivered_rate, false],
    ['delivered %', 'up', (r) => r.lg.delivered_pct, true],
    ['p50 µs', 'down', (r) => r.lg.latency_us?.p50, false],
    ['p99 µs', 'down', (r) => r.lg.latency_us?.p99, true],
    ['CPU µs/delivery', 'down', (r) => cpuPer(r, 'step0', r.lg.delivered), true],
  ],
  roundtrip: () => [
    ['p50 µs', 'down', (r) => r.lg.latency_us?.p50, false],
    ['p99 µs', 'down', (r) => r.lg.latency_us?.p99, true],
    ['p99.9 µs', 'down', (r) => r.lg.latency_us?.p999, false],
    ['PUBACK p99 µs', 'down', (r) => r.lg.puback_latency_us?.p99, true],
    ['delivered %', 'up', (r) => r.lg.delivered_pct, false],
    ['CPU µs/msg', 'down', (r) => cpuPer(r, 'step0', r.lg.delivered), true],
  ],
  idle: () => [
    ['connected', 'up', (r) => r.lg.connected, false],
    ['connect all (s)', 'down', (r) => r.lg.connect_all_secs, true],
    ['RSS at hold MB', 'down', (r) => mb(r.rssHoldKb), false],
    ['KB/conn', 'down', (r) => (r.rssHoldKb != null && r.rssBaseKb != null && r.lg.connected ? (r.rssHoldKb - r.rssBaseKb) / r.lg.connected : null), true],
    ['CPU µs/conn', 'down', (r) => cpuPer(r, 'connect', r.lg.connected), false],
  ],
  // mqtt-benchmark's own figures (see bench/README.md, "crosscheck"): closed
  // loop, one message in flight per client, publish → token completion.
  crosscheck: (v) => [
    ['msg/s (tool total)', 'up', (r) => r.lg.total_msgs_per_sec, v.qos === 1],
    ['mean µs', 'down', (r) => us(r.lg.msg_time_mean_avg), v.qos === 1],
    ['max µs', 'down', (r) => us(r.lg.msg_time_max), false],
    ['ok %', 'up', (r) => (r.lg.ratio == null ? null : r.lg.ratio * 100), false],
    ['CPU µs/msg', 'down', (r) => cpuPer(r, 'step0', r.lg.successes), true],
    ['tool CPU (cores)', 'text', (r) => (r.lg.loadgen_cpu_util == null ? null : r.lg.loadgen_cpu_util.toFixed(2)), false],
  ],
  // The Rust crate mqtt-benchmark prints only counts and durations: msg/s is
  // messages ÷ the time until the last publish was handed to the client
  // library (not until it was sent or acknowledged).
  'crosscheck-rs': (v) => [
    ['msg/s (tool total)', 'up', (r) => r.lg.total_msgs_per_sec, v.qos === 1],
    ['ok %', 'up', (r) => (r.lg.successes == null ? null : (r.lg.successes / v.messages) * 100), false],
    ['CPU µs/msg', 'down', (r) => cpuPer(r, 'step0', r.lg.successes), true],
    ['tool CPU (cores)', 'text', (r) => (r.lg.loadgen_cpu_util == null ? null : r.lg.loadgen_cpu_util.toFixed(2)), false],
  ],
  // bench/loadgen shaped like the tools: publishers only, as fast as the
  // window (QoS 1) or the socket (QoS 0) allows, one message per write.
  'publish-only': (v) => [
    // QoS 1: PUBACKed ÷ step; QoS 0: written ÷ time until every publisher's
    // closing PINGREQ was answered (so the broker has read them all).
    ['msg/s', 'up', (r) => (v.qos === 1 ? r.lg.acked_rate : r.lg.processed_rate), true],
    ...(v.qos === 1 ? [['PUBACK p50 µs', 'down', (r) => r.lg.puback_latency_us?.p50, false], ['PUBACK p99 µs', 'down', (r) => r.lg.puback_latency_us?.p99, false]] : []),
    ['CPU µs/msg', 'down', (r) => cpuPer(r, 'step0', v.qos === 1 ? r.lg.acked : r.lg.offered), true],
    ['generator CPU (cores)', 'text', (r) => (r.lg.loadgen_cpu_util == null ? null : r.lg.loadgen_cpu_util.toFixed(2)), false],
  ],
  // persist: step `v.rateStep` is the fixed offered rate (the same load for
  // every broker: latency and CPU per message), step `v.maxStep` is as fast as
  // the window allows (throughput).
  persist: (v) => [
    ['acked msg/s @max', 'up', (r) => r.lg.steps?.[v.maxStep]?.acked_rate, true],
    [`PUBACK p50 µs @${v.rateLabel}`, 'down', (r) => r.lg.steps?.[v.rateStep]?.puback_latency_us?.p50, false],
    [`PUBACK p99 µs @${v.rateLabel}`, 'down', (r) => r.lg.steps?.[v.rateStep]?.puback_latency_us?.p99, true],
    ['PUBACK p99 µs @max', 'down', (r) => r.lg.steps?.[v.maxStep]?.puback_latency_us?.p99, false],
    ['delivered after reconnect', 'text', (r) => (r.lg.verify ? `${ifmt(r.lg.verify.delivered)} / ${ifmt(r.lg.verify.expected_acked)}${r.lg.verify.redelivered ? ` (+${ifmt(r.lg.verify.redelivered)} again)` : ''}` : null), false],
    ['delivered %', 'up', (r) => r.lg.verify?.delivered_pct_of_acked, false],
    [`broker CPU µs/msg @${v.rateLabel}`, 'down', (r) => cpuPer(r, `step${v.rateStep}`, r.lg.steps?.[v.rateStep]?.acked), true],
    [`Redis CPU µs/msg @${v.rateLabel}`, 'down', (r) => cpuPer(r, `step${v.rateStep}`, r.lg.steps?.[v.rateStep]?.acked, 'redisCpu'), true],
    ['Redis CPU µs/msg @max', 'down', (r) => cpuPer(r, `step${v.maxStep}`, r.lg.steps?.[v.maxStep]?.acked, 'redisCpu'), false],
    ['broker / Redis cores @max', 'text', (r) => {
      const b = coresIn(r, `step${v.maxStep}`, 'cpu')
      const d = coresIn(r, `step${v.maxStep}`, 'redisCpu')
      return b == null || d == null ? null : `${b.toFixed(2)} / ${d.toFixed(2)}`
    }, false],
    ['queued in Redis after reconnect', 'text', (r) => {
      const a = r.redis?.afterReconnect
      return a?.listEntries == null ? null : `${ifmt(a.listEntries)} (${ifmt(a.keys)} keys)`
    }, false],
    ['Redis keys after cleanup', 'text', (r) => (r.redis?.keysAfter == null ? null : ifmt(r.redis.keysAfter)), false],
  ],
  connrate: (v) =>
    v.rates.flatMap((rate, k) => [
      [`conn/s @${kfmt(rate)}`, 'up', (r) => r.lg.steps?.[k]?.achieved_rate, false],
      [`CONNACK p99 µs @${kfmt(rate)}`, 'down', (r) => r.lg.steps?.[k]?.connack_latency_us?.p99, true],
      [`CPU µs/conn @${kfmt(rate)}`, 'down', (r) => cpuPer(r, `step${k}`, r.lg.steps?.[k]?.connected), k === v.rates.length - 1],
    ]),
}

function variant(scenario, title, args, extra = {}) {
  return { scenario, title, args, kind: args[0], ...extra }
}

/** A crosscheck variant: mqtt-benchmark, `clients` publishers × `count` messages each. */
function crosscheck(qos, clients, count) {
  const total = (clients * count).toLocaleString('en-US')
  return variant('crosscheck', `crosscheck: third-party mqtt-benchmark v0.2.0, ${clients} clients × ${count.toLocaleString('en-US')} messages (${total}), QoS ${qos}, 16 B, as fast as each client's acks allow`,
    ['--clients', String(clients), '--count', String(count), '--qos', String(qos), '--size', '16', '--message-interval', '0', '--wait', '10000', '--topic', 'bench/crosscheck', '--client-prefix', 'mqb', '--format', 'json', '--quiet'],
    { kind: 'crosscheck', tool: 'mqtt-benchmark', qos, messages: clients * count })
}

/** A crosscheck variant with the Rust crate mqtt-benchmark: `clients` × `count` messages. */
function crosscheckRs(qos, clients, count) {
  const total = (clients * count).toLocaleString('en-US')
  return variant('crosscheck', `crosscheck: third-party mqtt-benchmark (Rust crate) 0.2.4, ${clients} clients × ${count.toLocaleString('en-US')} messages (${total}), QoS ${qos}, 16 B, topic per client, up to 100 in flight (rumqttc default)`,
    ['--client-num', String(clients), '--size', String(count), '--qos', String(qos), '--payload', 'x'.repeat(16), '--topic', 'bench/crosscheck', '--client-id', 'mqbrs'],
    { kind: 'crosscheck-rs', tool: 'mqtt-benchmark-rs', qos, messages: clients * count })
}

/** The same shape with bench/loadgen: 10 publishers, no subscriber, one message per write. */
function crosscheckOwn(qos, secs) {
  return variant('crosscheck', `crosscheck: fbroker-loadgen shaped like the tools, 10 publishers, no subscriber, ${secs} s, QoS ${qos}, 16 B, as fast as ${qos === 1 ? 'a window of 100 unacknowledged messages per publisher' : 'the socket'} allows, one message per write`,
    ['fanin', '--publishers', '10', '--subscribers', '0', '--qos', String(qos), '--payload', '16', '--rate', 'max', '--window', '100', '--batch', '1', '--duration-secs', String(secs), '--drain-max-secs', '2'],
    { kind: 'publish-only', qos })
}

function plan(profile) {
  const q = profile === 'quick'
  const v = []
  if (q) {
    v.push(variant('fanin', 'fanin: 100 publishers → 1 subscriber (bench/+/x), QoS 0, 16 B, rate sweep',
      ['fanin-sweep', '--publishers', '100', '--payload', '16', '--rates', '25k,50k,100k,200k,400k,800k', '--duration-secs', '1.5', '--drain-max-secs', '1', '--drain-idle-ms', '300'],
      { firstRate: '25k' }))
    v.push(variant('fanout', 'fanout: 1 publisher → 1,000 subscribers, QoS 0, 16 B, 100 msg/s offered (100k deliveries/s)',
      ['fanout', '--subscribers', '1000', '--qos', '0', '--rate', '100', '--duration-secs', '3', '--drain-max-secs', '2']))
    v.push(variant('roundtrip', 'roundtrip: QoS 1 publish → QoS 1 subscriber, 10k msg/s, 16 B',
      ['roundtrip', '--rate', '10000', '--duration-secs', '3', '--drain-max-secs', '2']))
    v.push(variant('idle', 'idle: 2,000 connections, each subscribed to its own topic, held 2 s',
      ['idle', '--connections', '2000', '--hold-secs', '2', '--source-addrs', '16']))
    v.push(variant('connrate', 'connrate: new connections at 1k/s then 5k/s, 2 s each (CONNECT→CONNACK, then DISCONNECT)',
      ['connrate', '--rates', '1000,5000', '--duration-secs', '2', '--source-addrs', '32'], { rates: [1000, 5000] }))
    v.push(crosscheck(1, 10, 2000))
    v.push(crosscheckRs(1, 10, 20000))
    v.push(crosscheckOwn(1, 3))
    v.push(crosscheck(0, 10, 10000))
    v.push(crosscheckRs(0, 10, 50000))
    v.push(crosscheckOwn(0, 3))
  } else {
    v.push(variant('fanin', 'fanin: 10 publishers → 1 subscriber (bench/+/x), QoS 0, 256 B, rate sweep',
      ['fanin-sweep', '--publishers', '10', '--payload', '256', '--rates', '20k,40k,80k,160k,320k,640k,1280k,2560k', '--duration-secs', '5', '--drain-max-secs', '3'],
      { firstRate: '20k' }))
    v.push(variant('fanin', 'fanin: 100 publishers → 1 subscriber (bench/#), QoS 0, 16 B, rate sweep',
      ['fanin-sweep', '--publishers', '100', '--payload', '16', '--filter', 'bench/#', '--rates', '20k,40k,80k,160k,320k,640k,1280k,2560k', '--duration-secs', '5', '--drain-max-secs', '3'],
      { firstRate: '20k' }))
    v.push(variant('fanout', 'fanout: 1 publisher → 1,000 subscribers, QoS 0, 16 B, 200 msg/s offered (200k deliveries/s)',
      ['fanout', '--subscribers', '1000', '--qos', '0', '--rate', '200', '--duration-secs', '10', '--drain-max-secs', '5']))
    v.push(variant('fanout', 'fanout: 1 publisher → 1,000 subscribers, QoS 1, 16 B, 100 msg/s offered (100k deliveries/s)',
      ['fanout', '--subscribers', '1000', '--qos', '1', '--rate', '100', '--duration-secs', '10', '--drain-max-secs', '5']))
    v.push(variant('roundtrip', 'roundtrip: QoS 1 publish → QoS 1 subscriber, 10k msg/s, 16 B',
      ['roundtrip', '--rate', '10000', '--duration-secs', '20', '--drain-max-secs', '3']))
    v.push(variant('idle', 'idle: 10,000 connections, each subscribed to its own topic, held 10 s',
      ['idle', '--connections', '10000', '--hold-secs', '10', '--source-addrs', '16']))
    v.push(variant('connrate', 'connrate: new connections at 1k/s then 5k/s, 5 s each (CONNECT→CONNACK, then DISCONNECT)',
      ['connrate', '--rates', '1000,5000', '--duration-secs', '5', '--source-addrs', '32'], { rates: [1000, 5000] }))
    v.push(crosscheck(1, 10, 20000))
    v.push(crosscheckRs(1, 10, 100000))
    v.push(crosscheckOwn(1, 10))
    v.push(crosscheck(0, 10, 100000))
    v.push(crosscheckRs(0, 10, 250000))
    v.push(crosscheckOwn(0, 10))
  }
  // persist: QoS 1 into offline persistent sessions, Redis persistence.
  {
    const secs = q ? 3 : 10
    v.push(variant('persist', `persist: 10 persistent sessions (clean session 0) subscribed QoS 1, each to one of 10 topics, then offline; 10 publishers, QoS 1, 16 B, one topic each (every message queued for 1 session, in Redis before the PUBACK); 5k msg/s for ${secs} s, then as fast as a window of 100 unacknowledged messages per publisher allows for ${secs} s; then the sessions reconnect and count what they receive`,
      ['persist', '--subscribers', '10', '--publishers', '10', '--payload', '16', '--rates', '5k,max', '--duration-secs', String(secs), '--window', '100', '--drain-max-secs', '5', '--verify-max-secs', q ? '60' : '300', '--verify-idle-ms', '5000'],
      { redis: true, rateLabel: '5k', rateStep: 0, maxStep: 1 }))
  }
  // fanin over other transports: one variant for every transport asked for,
  // so the TCP baseline runs once and each broker runs its transports back to
  // back (TCP first).
  const transports = Object.entries(TRANSPORT_SCENARIOS).filter(([sc]) => scenarios.includes(sc)).map(([, t]) => t)
  if (transports.length) {
    const names = ['tcp', ...transports].map((t) => TRANSPORT_NAMES[t]).join(', ')
    const rates = q ? '25k,50k,100k,200k,400k,800k,1600k' : '20k,40k,80k,160k,320k,640k,1280k,2560k'
    v.push(variant('fanin-transports', `fanin over ${names}: 10 publishers → 1 subscriber (bench/+/x), QoS 0, 16 B, rate sweep`,
      ['fanin-sweep', '--publishers', '10', '--payload', '16', '--rates', rates, '--duration-secs', q ? '1.5' : '5', '--drain-max-secs', q ? '1' : '3', ...(q ? ['--drain-idle-ms', '300'] : [])],
      { firstRate: q ? '25k' : '20k', transports: ['tcp', ...transports] }))
  }
  return v.filter((x) => scenarios.includes(x.scenario) || x.scenario === 'fanin-transports')
}

function step0(r) {
  return r.lg.steps?.[0]
}
function us(ms) {
  return ms == null ? null : ms * 1000
}
function mb(kb) {
  return kb == null ? null : kb / 1024
}
function kfmt(n) {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k/s` : `${n}/s`
}
/** Broker (or `which`: redisCpu) CPU µs per unit between two marks (`<mark>:begin` .. `<mark>:end`). */
function cpuPer(r, mark, units, which = 'cpu') {
  const a = r[which]?.[`${mark}:begin`]
  const b = r[which]?.[`${mark}:end`]
  if (a == null || b == null || !units) return null
  return ((b - a) * 1e6) / units
}
/** Cores used between two marks: CPU seconds ÷ wall seconds. */
function coresIn(r, mark, which) {
  const a = r[which]?.[`${mark}:begin`]
  const b = r[which]?.[`${mark}:end`]
  const t0 = r.markTime?.[`${mark}:begin`]
  const t1 = r.markTime?.[`${mark}:end`]
  if (a == null || b == null || t0 == null || t1 == null || t1 <= t0) return null
  return (b - a) / ((t1 - t0) / 1000)
}

// ---------------------------------------------------------------- brokers

const CLK_TCK = Number(sh('getconf', ['CLK_TCK'])) || 100

function locate(name) {
  switch (name) {
    case 'fbroker': {
      const main = path.join(ROOT, 'packages', 'fbroker', 'dist', 'cli', 'main.js')
      if (!fs.existsSync(main)) return { missing: `${path.relative(ROOT, main)} not found (build the repo: npm install / npm run build)` }
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'packages', 'fbroker', 'package.json'), 'utf8'))
      const rev = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])
      const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'])
      return {
        version: `fbroker ${pkg.version} (git ${rev ?? '?'}${dirty ? ', with uncommitted changes' : ''}), node ${process.version}; addon ${ADDON_AT_START ?? '?'}`,
        // Other transports: a `listeners` item next to the TCP listener of
        // `--port` (which a `listeners` list keeps only because --port is given).
        supports: (type) => (type === 'tcp' || listenersInConfig() ? null : `this build's config has no \`listeners\` key (packages/fbroker/dist/config/listeners.js missing: rebuild with npm run build)`),
        // persist: Redis persistence (`persistence: redis`), checked in the built CLI.
        persist: () => (fs.readFileSync(main, 'utf8').includes('--persistence') ? null : `this build's CLI has no --persistence (rebuild with npm run build)`),
        cmd: (port, tmp, t, p) => {
          const cfg = path.join(tmp, 'fbroker.json')
          const conf = { max_inflight_messages: 20, max_queued_messages: 1000, max_connections: 0 }
          if (p) Object.assign(conf, { max_queued_messages: p.queueLimit, persistence: 'redis', redis_url: p.redisUrl, persistence_mode: 'ack_after_store' })
          if (t) {
            const l = { type: t.type, host: HOST, port: t.port }
            if (t.tls) Object.assign(l, { cert: t.cert, key: t.key })
            if (t.ws) l.path = t.path
            conf.listeners = [l]
          }
          fs.writeFileSync(cfg, JSON.stringify(conf, null, 2) + '\n')
          return ['node', path.relative(ROOT, main), 'start', '--host', HOST, '--port', String(port), '--log-level', 'warn', '--config', cfg]
        },
        config: 'anonymous, in-memory; config file `{max_inflight_messages: 20, max_queued_messages: 1000, max_connections: 0}` (persist: `persistence: redis`, `redis_url`, `persistence_mode: ack_after_store`, `max_queued_messages: ' + PERSIST_QUEUE_LIMIT + '`, the other persistence keys at their defaults: `persistence_buffer_max_ops` 100,000, `persistence_buffer_max_bytes` 64 MiB), plus for the transport runs `listeners: [{type: tls|ws|wss, host, port, cert, key, path: /mqtt}]` (the TCP listener of `--port` stays); worker_threads default (one per core it may run on: 1 when pinned)',
      }
    }
    case 'mosquitto': {
      const bin = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto'].find((p) => fs.existsSync(p)) ?? (has('mosquitto') ? 'mosquitto' : null)
      if (!bin) return { missing: 'mosquitto not installed (bench/setup.sh: apt-get install -y mosquitto)' }
      const v = (spawnSync(bin, ['-h'], { encoding: 'utf8' }).stdout || '').split('\n')[0].trim()
      return {
        version: v || 'mosquitto (version unknown)',
        supports: () => null,
        persist: () => 'n/a: no Redis persistence (Mosquitto persists only to its own file, written periodically)',
        cmd: (port, tmp, t) => {
          const conf = path.join(tmp, 'mosquitto.conf')
          const extra = []
          if (t) {
            // libwebsockets (built into Debian's 2.0.11) takes the listener's
            // host as an interface name: `127.0.0.1` would bind every
            // address, `lo` binds loopback only. 2.0.11 also refuses to start
            // with websockets listeners only ("Unable to start any listening
            // sockets"), so the TCP listener above stays.
            extra.push(`listener ${t.port} ${t.ws ? 'lo' : HOST}`, 'max_connections -1')
            if (t.ws) extra.push('protocol websockets')
            if (t.tls) extra.push(`cafile ${t.ca}`, `certfile ${t.cert}`, `keyfile ${t.key}`)
          }
          fs.writeFileSync(conf, [
            `listener ${port} ${HOST}`,
            'allow_anonymous true',
            'persistence false',
            'log_dest stderr',
            'log_type error',
            'log_type warning',
            'max_inflight_messages 20',
            'max_queued_messages 1000',
            'max_connections -1',
            'set_tcp_nodelay true',
            ...extra,
            '',
          ].join('\n'))
          // Run it under a name of its own: scripts elsewhere in the repo stop
          // the *system* broker with `pkill -x mosquitto`, which must not hit
          // this instance (on its own random port) in the middle of a run.
          const link = path.join(tmp, 'mosquitto-bench')
          fs.symlinkSync(bin, link)
          return [link, '-c', conf]
        },
        config: 'mosquitto.conf: anonymous, `persistence false`, `max_inflight_messages 20`, `max_queued_messages 1000`, `max_connections -1`, `set_tcp_nodelay true`; transport runs add a second listener (`cafile`/`certfile`/`keyfile` for TLS, `protocol websockets` on `lo` for WebSocket); started through a symlink named `mosquitto-bench` in the temp dir (so `pkill -x mosquitto` elsewhere cannot stop it mid-run)',
      }
    }
    case 'aedes': {
      const pj = path.join(PEERS, 'node_modules', 'aedes', 'package.json')
      if (!fs.existsSync(pj)) return { missing: 'aedes not installed (bench/setup.sh: npm install --prefix bench/peers aedes)' }
      const { version } = JSON.parse(fs.readFileSync(pj, 'utf8'))
      const aprPj = path.join(PEERS, 'node_modules', 'aedes-persistence-redis', 'package.json')
      const aprVersion = fs.existsSync(aprPj) ? JSON.parse(fs.readFileSync(aprPj, 'utf8')).version : null
      return {
        version: `aedes ${version}${aprVersion ? `, aedes-persistence-redis ${aprVersion}` : ''}, node ${process.version}`,
        persist: () => (aprVersion ? null : 'MISSING: aedes-persistence-redis not installed in bench/peers (bench/setup.sh)'),
        supports: (type) => {
          if (!type.startsWith('ws')) return null
          const wsPj = path.join(PEERS, 'node_modules', 'ws', 'package.json')
          return fs.existsSync(wsPj) ? null : 'not supported in this setup: the npm package ws is not installed in bench/peers (bench/setup.sh installs it)'
        },
        cmd: (port, tmp, t, p) => {
          const argv = ['node', path.relative(ROOT, path.join(PEERS, 'aedes-server.mjs')), '--host', HOST, '--port', String(port)]
          if (p) argv.push('--redis-url', p.redisUrl, '--max-session-delivery', String(p.queueLimit))
          if (t) argv.push(`--${t.type}-port`, String(t.port))
          if (t?.tls) argv.push('--cert', t.cert, '--key', t.key)
          if (t?.ws) argv.push('--ws-path', t.path)
          return argv
        },
        config: `bench/peers/aedes-server.mjs: \`Aedes.createBroker()\` defaults (in-memory persistence, concurrency 100; no per-client inflight/queue limits; persist: \`persistence: aedes-persistence-redis({host, port, db, family: 4, maxSessionDelivery: ${PERSIST_QUEUE_LIMIT}})\`, its other options and ioredis' at their defaults, mqemitter in-memory), \`net.createServer\` with \`setNoDelay(true)\`; TLS: \`tls.createServer\`; WebSocket: \`http\`/\`https.createServer\` + ws ${wsVersion() ?? '(missing)'} \`WebSocketServer\` + \`createWebSocketStream\``,
      }
    }
    case 'rumqttd': {
      const bin = path.join(PEERS, 'rumqttd', 'bin', 'rumqttd')
      if (!fs.existsSync(bin)) return { missing: 'bench/peers/rumqttd/bin/rumqttd not built (bench/setup.sh: cargo install rumqttd --root bench/peers/rumqttd)' }
      const v = sh(bin, ['--version']) ?? 'rumqttd'
      return {
        version: v,
        persist: () => 'n/a: no Redis persistence (rumqttd keeps sessions in memory only)',
        // Built with its default features (use-rustls, websocket): TLS on a
        // v4 listener, WebSocket (and WebSocket over TLS) on a [ws] listener.
        supports: () => null,
        cmd: (port, tmp, t) => {
          const conf = path.join(tmp, 'rumqttd.toml')
          const connections = ['connection_timeout_ms = 10000', 'max_payload_size = 1048576', 'max_inflight_count = 20', 'dynamic_filters = true']
          const extra = []
          if (t) {
            const sec = t.ws ? 'ws.1' : 'v4.2'
            extra.push(`[${sec}]`, `name = "${t.type}-1"`, `listen = "${HOST}:${t.port}"`, 'next_connection_delay_ms = 0')
            if (t.tls) extra.push(`[${sec}.tls]`, `certpath = "${t.cert}"`, `keypath = "${t.key}"`)
            extra.push(`[${sec}.connections]`, ...connections, '')
          }
          fs.writeFileSync(conf, [
            'id = 0',
            '[router]',
            'id = 0',
            'max_connections = 20010',
            'max_outgoing_packet_count = 200',
            'max_segment_size = 104857600',
            'max_segment_count = 10',
            '',
            '[v4.1]',
            'name = "v4-1"',
            `listen = "${HOST}:${port}"`,
            'next_connection_delay_ms = 0',
            '[v4.1.connections]',
            'connection_timeout_ms = 10000',
            'max_payload_size = 1048576',
            'max_inflight_count = 20',
            'dynamic_filters = true',
            '',
            ...extra,
          ].join('\n'))
          return [path.relative(ROOT, bin), '-q', '-c', conf]
        },
        config: 'rumqttd.toml: one v4 listener, `max_inflight_count 20`, `max_payload_size 1048576`, `next_connection_delay_ms 0`, router `max_connections 20010`; no console, no prometheus; transport runs add a `[v4.2]` listener with `[v4.2.tls]` certpath/keypath (TLS) or a `[ws.1]` listener (with `[ws.1.tls]` for WebSocket over TLS), same connection settings',
      }
    }
  }
  return { missing: 'unknown broker' }
}

/** Whether the built fbroker reads a `listeners` list from its config file. */
function listenersInConfig() {
  return fs.existsSync(path.join(ROOT, 'packages', 'fbroker', 'dist', 'config', 'listeners.js'))
}
function wsVersion() {
  const pj = path.join(PEERS, 'node_modules', 'ws', 'package.json')
  return fs.existsSync(pj) ? JSON.parse(fs.readFileSync(pj, 'utf8')).version : null
}

/** Identifies the fbroker native addon on disk (name, size, mtime), to notice a rebuild mid-run. */
function addonStamp() {
  const dir = path.join(ROOT, 'packages', 'binding')
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.node')).map((f) => {
      const st = fs.statSync(path.join(dir, f))
      return `${f} ${st.size} B, built ${st.mtime.toISOString().slice(0, 19).replace('T', ' ')} UTC`
    }).join('; ') || null
  } catch {
    return null
  }
}
const ADDON_AT_START = addonStamp()

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function probe(port) {
  return new Promise((resolve) => {
    const c = net.connect({ host: HOST, port })
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function withLimits(argv, core) {
  // Raise the soft open-file limit to the hard one; `exec` keeps the PID, so
  // the child's PID is the broker's (or the generator's) own.
  const pin = PIN ? ['taskset', '-c', String(core)] : []
  return ['/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...pin, ...argv]]
}

/**
 * Starts the broker with its TCP listener on a free port and, for another
 * transport `t` ({type, tls, ws, ca, cert, key, path}), a second listener on
 * another free port; waits until the port the load goes to accepts
 * connections. Returns that port as `port`.
 */
async function startBroker(name, info, tmp, t = null, p = null) {
  const tcpPort = await freePort()
  let tt = null
  if (t) {
    let p
    do p = await freePort()
    while (p === tcpPort)
    tt = { ...t, port: p }
  }
  const port = tt ? tt.port : tcpPort
  const argv = info.cmd(tcpPort, tmp, tt, p)
  const logPath = path.join(tmp, `${name}.log`)
  const log = fs.openSync(logPath, 'w')
  const [cmd, args] = withLimits(argv, 0)
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', log, log] })
  fs.closeSync(log)
  let exited = null
  child.once('exit', (code, sig) => (exited = { code, sig }))
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (exited) break
    if (await probe(port)) {
      await sleep(200) // let the probe's connection go away
      return { child, pid: child.pid, port, logPath, cmdline: (PIN ? 'taskset -c 0 ' : '') + argv.join(' '), exited: () => exited }
    }
    await sleep(50)
  }
  try { child.kill('SIGKILL') } catch {}
  const tail = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').slice(-600) : ''
  throw new Error(`${name} did not start listening on ${HOST}:${port}${exited ? ` (exited ${JSON.stringify(exited)})` : ''}: ${tail}`)
}

async function stopBroker(b) {
  if (b.exited()) return
  const done = new Promise((r) => b.child.once('exit', r))
  b.child.kill('SIGTERM')
  const t = await Promise.race([done.then(() => 'ok'), sleep(5000).then(() => 'timeout')])
  if (t === 'timeout') {
    b.child.kill('SIGKILL')
    await Promise.race([done, sleep(2000)])
  }
}

function procSample(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK // utime + stime, all threads
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] ?? NaN)
    return { cpu, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), threads: kb('Threads') }
  } catch {
    return null
  }
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat. */
function machineBusy() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: only task time (user,
    // nice, system) — irq/softirq time (loopback TCP processing, mostly our
    // own traffic) is not charged to any process, so it is left out here too.
    return (f[0] + f[1] + f[2]) / CLK_TCK
  } catch {
    return null
  }
}

function runLoadgen(args, port, onMark, limitMs) {
  const argv = [path.relative(ROOT, LOADGEN), ...args, '--host', HOST, '--port', String(port)]
  const [cmd, wargs] = withLimits(argv, 1)
  return new Promise((resolve) => {
    // stdin: a pipe, so that the runner can resume a generator paused with
    // --pause-after-verify (persist) by writing a line.
    const child = spawn(cmd, wargs, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    child.stdin.on('error', () => {})
    const ctl = { resume: () => child.stdin.write('\n') }
    let out = ''
    let err = ''
    let pending = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => {
      pending += d
      let i
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i)
        pending = pending.slice(i + 1)
        const m = line.match(/^MARK (?:step=(\d+)|phase=(\w+)) (begin|end)/)
        if (m) onMark(`${m[1] != null ? `step${m[1]}` : m[2]}:${m[3]}`, ctl)
        else if (line.startsWith('READY')) onMark('ready')
        else err += line + '\n'
      }
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
    child.on('close', (code, sig) => {
      clearTimeout(timer)
      let json = null
      try {
        json = JSON.parse(out.trim().split('\n').pop())
      } catch {}
      resolve({ code, sig, json, stderr: err.trim(), cmdline: (PIN ? 'taskset -c 1 ' : '') + argv.join(' ') })
    })
  })
}

/**
 * Runs mqtt-benchmark (pinned like the load generator) against the broker and
 * returns its JSON totals in the shape runOne expects from the load generator.
 * The whole run is one "step"; the tool's CPU time comes from the wrapping
 * shell's `times` (children's user + system time).
 */
function runMqttBenchmark(v, port, onMark, settle) {
  const argv = [path.relative(ROOT, MQTT_BENCHMARK), ...v.args, '--broker', `tcp://${HOST}:${port}`]
  const pin = PIN ? ['taskset', '-c', '1'] : []
  // At least 1,000 msg/s, or it is killed (with its process group).
  const limitMs = 60_000 + v.messages
  return new Promise((resolve) => {
    onMark('step0:begin')
    const t0 = process.hrtime.bigint()
    const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; "$@"; rc=$?; times >&2; exit $rc', 'sh', ...pin, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    }, limitMs)
    child.on('close', async (code, sig) => {
      clearTimeout(timer)
      const wall = Number(process.hrtime.bigint() - t0) / 1e9
      // The tool may finish before the broker has read everything it wrote
      // (QoS 0 sits in socket buffers): the broker's CPU is read once it has
      // gone quiet.
      await settle()
      onMark('step0:end')
      const cpuLine = [...err.matchAll(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/g)].pop()
      const cpu = cpuLine ? Number(cpuLine[1]) * 60 + Number(cpuLine[2]) + Number(cpuLine[3]) * 60 + Number(cpuLine[4]) : null
      const logLines = err.split('\n').filter((l) => l.trim() && !/^\d+m[\d.]+s\s+\d+m[\d.]+s$/.test(l.trim()))
      let json = null
      try {
        const parsed = JSON.parse(out)
        json = { scenario: 'crosscheck', tool: 'mqtt-benchmark', ...parsed.totals, runs: parsed.runs, loadgen_cpu_secs: cpu, loadgen_cpu_util: cpu == null ? null : cpu / wall, wall_secs: wall }
        if (logLines.length) json.last_error = `${logLines.length} log line(s), last: ${logLines[logLines.length - 1]}`
        if (parsed.totals?.failures > 0) json.last_error = [json.last_error, `${parsed.totals.failures} publish(es) failed`].filter(Boolean).join('; ')
      } catch {
        if (killed) json = { error: `mqtt-benchmark killed after ${limitMs / 1000} s` }
      }
      resolve({ code, sig, json, stderr: logLines.join('\n'), cmdline: (PIN ? 'taskset -c 1 ' : '') + argv.join(' ') })
    })
  })
}

/**
 * Runs the Rust crate mqtt-benchmark (pinned like the load generator). It
 * prints one line per client and a total line,
 * `N client, total: M, duration: D (sec), avg speed: S (msg/sec)`, which
 * becomes {total_msgs_per_sec, successes}. Tool CPU from `times`, as above.
 */
function runRustMqttBenchmark(v, port, onMark, settle) {
  const argv = [path.relative(ROOT, RUST_MQTT_BENCHMARK), ...v.args, '--broker', `${HOST}:${port}`]
  const pin = PIN ? ['taskset', '-c', '1'] : []
  const limitMs = 60_000 + v.messages
  return new Promise((resolve) => {
    onMark('step0:begin')
    const t0 = process.hrtime.bigint()
    const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; "$@"; rc=$?; times >&2; exit $rc', 'sh', ...pin, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    }, limitMs)
    child.on('close', async (code, sig) => {
      clearTimeout(timer)
      const wall = Number(process.hrtime.bigint() - t0) / 1e9
      // The tool may finish before the broker has read everything it wrote
      // (QoS 0 sits in socket buffers): the broker's CPU is read once it has
      // gone quiet.
      await settle()
      onMark('step0:end')
      const cpuLine = [...err.matchAll(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/g)].pop()
      const cpu = cpuLine ? Number(cpuLine[1]) * 60 + Number(cpuLine[2]) + Number(cpuLine[3]) * 60 + Number(cpuLine[4]) : null
      const m = out.match(/(\d+) client, total: (\d+), duration: ([\d.]+) \(sec\), avg speed: ([\d.]+) \(msg\/sec\)/)
      const failures = out.split('\n').filter((l) => /failed/.test(l))
      const clients = [...out.matchAll(/client: (\d+), num: (\d+), duration: ([\d.]+) \(sec\), speed: ([\d.]+)/g)].map((x) => ({ client: Number(x[1]), num: Number(x[2]), secs: Number(x[3]), msgs_per_sec: Number(x[4]) }))
      let json = null
      if (m) {
        json = { scenario: 'crosscheck', tool: 'mqtt-benchmark-rs', clients: Number(m[1]), successes: Number(m[2]), duration_secs: Number(m[3]), total_msgs_per_sec: Number(m[4]), runs: clients, loadgen_cpu_secs: cpu, loadgen_cpu_util: cpu == null ? null : cpu / wall, wall_secs: wall }
        if (failures.length) json.last_error = `${failures.length} failure line(s), last: ${failures[failures.length - 1]}`
      } else json = { error: killed ? `mqtt-benchmark (Rust) killed after ${limitMs / 1000} s` : `no total line in its output (exit ${code ?? sig}): ${oneLine(out.slice(-200) + err.slice(-200))}` }
      resolve({ code, sig, json, stderr: err, cmdline: (PIN ? 'taskset -c 1 ' : '') + argv.join(' ') })
    })
  })
}

/** Upper bound on a loadgen run's wall time, from its arguments. */
function limitFor(args) {
  const get = (k, d) => {
    const i = args.indexOf(k)
    return i >= 0 ? args[i + 1] : d
  }
  const dur = Number(get('--duration-secs', 10))
  const drain = Number(get('--drain-max-secs', 3))
  const steps = (get('--rates', '1').split(',').length)
  const hold = Number(get('--hold-secs', 0))
  const verify = Number(get('--verify-max-secs', 0))
  return (steps * (dur + drain + 6) + hold + verify + 90) * 1000
}

/** Waits (up to maxSecs) until other processes use less than 0.3 cores. */
async function waitQuiet(maxSecs) {
  const deadline = Date.now() + maxSecs * 1000
  let cores = null
  for (;;) {
    const b0 = machineBusy()
    await sleep(1000)
    const b1 = machineBusy()
    if (b0 == null || b1 == null) return null
    cores = b1 - b0
    if (cores < 0.3 || Date.now() >= deadline) return cores
  }
}

/** What the load generator and the broker need to know about transport `type` (null for plain TCP). */
function transportSpec(type) {
  if (type === 'tcp') return null
  const tls = type === 'tls' || type === 'wss'
  const ws = type === 'ws' || type === 'wss'
  if (tls && CERTS?.error) throw new Error(`no certificates: ${CERTS.error}`)
  return { type, tls, ws, path: WS_PATH, ...(tls ? { ca: CERTS.ca, cert: CERTS.cert, key: CERTS.key } : {}) }
}
function transportArgs(t) {
  if (!t) return []
  return ['--transport', t.type, ...(t.tls ? ['--cafile', t.ca] : []), ...(t.ws ? ['--ws-path', t.path] : [])]
}

/**
 * Throw-away CA and server certificate for the TLS runs (scripts/gencert.sh),
 * in a temp dir removed when the runner exits. The dir and the files are
 * made world-readable: Mosquitto started as root drops to its own user before
 * it reads them.
 */
let CERTS = null
function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fbroker-bench-certs-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'gencert.sh'), dir], { encoding: 'utf8' })
  if (r.status !== 0) return { error: `scripts/gencert.sh failed: ${(r.stderr || r.stdout || '').trim()}` }
  fs.chmodSync(dir, 0o755)
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o644)
  return { dir, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') }
}

/**
 * A fresh redis-server for one broker run of the persist scenario, started by
 * scripts/redis.sh on a free port with its data dir in `tmp` (`--save ''`,
 * `--appendonly no`: nothing goes to disk; otherwise Redis' defaults), and
 * pinned to --redis-core. Returns {port, dir, pid, url, pinned}.
 */
async function startRedis(tmp) {
  const dir = path.join(tmp, 'redis')
  const port = await freePort()
  const r = spawnSync('bash', [REDIS_SH, 'start', String(port), dir], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`scripts/redis.sh start ${port} failed: ${oneLine(r.stderr || r.stdout || '')}`)
  const pid = Number(fs.readFileSync(path.join(dir, `redis-${port}.pid`), 'utf8').trim())
  const core = opts['redis-core']
  let pinned = 'not pinned'
  if (PIN && core !== 'none') {
    // -a: every thread of the process (Redis has background I/O threads).
    const t = spawnSync('taskset', ['-a', '-pc', core, String(pid)], { encoding: 'utf8' })
    pinned = t.status === 0 ? `taskset -a -pc ${core}` : `pinning failed: ${oneLine(t.stderr)}`
  }
  return { port, dir, pid, url: `redis://${HOST}:${port}/0`, pinned }
}
function stopRedis(r) {
  spawnSync('bash', [REDIS_SH, 'stop', String(r.port), r.dir], { encoding: 'utf8' })
}
function redisCli(r, args) {
  const x = spawnSync('redis-cli', ['-h', HOST, '-p', String(r.port), ...args], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 })
  return x.status === 0 ? x.stdout : null
}
/**
 * Waits until Redis has processed no more than a few commands per 250 ms
 * for `quietMs` in a row (at most `maxMs`): the broker may go on writing
 * after the load stops, and after a pause (fbroker's writer has left Redis
 * idle for ~2 s with ops buffered). Returns the seconds waited.
 */
async function waitRedisQuiet(r, quietMs = 3000, maxMs = 60_000) {
  const commands = () => Number((redisCli(r, ['info', 'stats'])?.match(/^total_commands_processed:(\d+)/m) || [])[1] ?? NaN)
  const t0 = Date.now()
  let last = commands()
  let quietSince = Date.now()
  while (Number.isFinite(last) && Date.now() - t0 < maxMs && Date.now() - quietSince < quietMs) {
    await sleep(250)
    const c = commands()
    if (!Number.isFinite(c)) break
    if (c - last > 20) quietSince = Date.now()
    last = c
  }
  return (Date.now() - t0) / 1000
}
// Every list key and the sum of their lengths: both brokers keep session
// queues as lists (fbroker `<prefix>c:{id}:q`, aedes-persistence-redis
// `outgoing:<id>`), so after the reconnect phase this should be 0 entries.
const LIST_ENTRIES_LUA = `local c = "0" local n = 0 local e = 0
repeat local r = redis.call("SCAN", c, "COUNT", 1000, "TYPE", "list") c = r[1]
for _, k in ipairs(r[2]) do n = n + 1 e = e + redis.call("LLEN", k) end until c == "0"
return {n, e}`
/** Keys, list keys and list entries now in the store. */
function redisStoreState(r) {
  const keys = Number(redisCli(r, ['dbsize'])?.trim() ?? NaN)
  const le = (redisCli(r, ['eval', LIST_ENTRIES_LUA, '0']) ?? '').trim().split('\n').map(Number)
  return { keys: Number.isFinite(keys) ? keys : null, lists: Number.isFinite(le[0]) ? le[0] : null, listEntries: Number.isFinite(le[1]) ? le[1] : null }
}

/** What the store holds after the run: key count, key shapes (ids replaced), command counts, memory. */
function redisReport(r) {
  const out = { keysAfter: null, keyShapes: {}, commands: {}, usedMemoryPeak: null }
  const n = redisCli(r, ['dbsize'])
  if (n != null) out.keysAfter = Number(n.trim())
  const keys = redisCli(r, ['--scan'])
  if (keys != null) {
    for (const k of keys.split('\n').filter(Boolean)) {
      const shape = k.replace(/\{[^}]*\}/g, '{…}').replace(/[0-9a-f]{8,}|\d+/g, 'N')
      out.keyShapes[shape] = (out.keyShapes[shape] ?? 0) + 1
    }
  }
  const stats = redisCli(r, ['info', 'commandstats'])
  for (const m of (stats ?? '').matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.commands[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) }
  const mem = redisCli(r, ['info', 'memory'])
  out.usedMemoryPeak = (mem?.match(/^used_memory_peak_human:(\S+)/m) || [])[1] ?? null
  return out
}

async function runOne(name, info, v, transport = 'tcp') {
  const waitSecs = Number(opts['wait-quiet']) || 0
  if (waitSecs > 0) {
    const c = await waitQuiet(waitSecs)
    if (c != null && c >= 0.3) process.stderr.write(`   (machine still busy: ${c.toFixed(2)} cores used by others after waiting ${waitSecs} s)\n`)
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `fbroker-bench-${name}-`))
  let b
  let t
  let redis = null
  try {
    t = transportSpec(transport)
    if (v.redis) redis = await startRedis(tmp)
    b = await startBroker(name, info, tmp, t, redis ? { redisUrl: redis.url, queueLimit: PERSIST_QUEUE_LIMIT } : null)
  } catch (e) {
    if (redis) stopRedis(redis)
    fs.rmSync(tmp, { recursive: true, force: true })
    return { error: String(e.message || e) }
  }
  const cpu = {}
  const redisCpu = {}
  const markTime = {}
  const samples = []
  let ready = false
  let rssHoldKb = null
  const base = procSample(b.pid)
  cpu['start'] = base?.cpu
  const redisBase = redis ? procSample(redis.pid) : null
  const busy0 = machineBusy()
  const self0 = process.cpuUsage()
  const wall0 = Date.now()
  let storeAfterReconnect = null
  const onMark = (mark, ctl) => {
    const s = procSample(b.pid)
    markTime[mark] = Date.now()
    if (redis) redisCpu[mark] = procSample(redis.pid)?.cpu
    if (redis && mark === 'store:begin') {
      // The sessions are back and have acknowledged everything: look at the
      // store once the broker has stopped writing, then let the generator
      // go on to the cleanup.
      void (async () => {
        const waited = await waitRedisQuiet(redis)
        storeAfterReconnect = { ...redisStoreState(redis), waitedSecs: waited }
        ctl?.resume()
      })()
    }
    if (!s) return
    samples.push({ mark, ...s })
    if (mark === 'ready') {
      ready = true
      cpu['connect:begin'] = base?.cpu
      cpu['connect:end'] = s.cpu
      rssHoldKb = Math.max(rssHoldKb ?? 0, s.rssKb)
    } else cpu[mark] = s.cpu
  }
  // Sample RSS during an idle hold.
  const poll = setInterval(() => {
    if (!ready) return
    const s = procSample(b.pid)
    if (s) rssHoldKb = Math.max(rssHoldKb ?? 0, s.rssKb)
  }, 250)
  // Third-party tools: wait until the broker's CPU time stops growing (less
  // than 2 ticks in 100 ms, at most 5 s) before the end sample.
  const settle = async () => {
    let last = procSample(b.pid)?.cpu
    for (let i = 0; i < 50 && last != null; i++) {
      await sleep(100)
      const c = procSample(b.pid)?.cpu
      if (c == null || c - last < 2 / CLK_TCK) break
      last = c
    }
  }
  const lgArgs = [...v.args, ...transportArgs(t), ...(redis ? ['--pause-after-verify'] : [])]
  const lg = v.tool === 'mqtt-benchmark' ? await runMqttBenchmark(v, b.port, onMark, settle) : v.tool === 'mqtt-benchmark-rs' ? await runRustMqttBenchmark(v, b.port, onMark, settle) : await runLoadgen(lgArgs, b.port, onMark, limitFor(v.args) + (redis ? 60_000 : 0))
  clearInterval(poll)
  let redisEnd = null
  let redisOut = null
  if (redis) {
    // The broker may still be writing to the store after the generator exits.
    const settleSecs = await waitRedisQuiet(redis)
    redisEnd = procSample(redis.pid)
    redisOut = { url: redis.url, pinned: redis.pinned, afterReconnect: storeAfterReconnect, settleSecs, cpuTotal: redisEnd && redisBase ? redisEnd.cpu - redisBase.cpu : null, rssEndKb: redisEnd?.rssKb ?? null, ...redisReport(redis) }
  }
  const end = procSample(b.pid)
  // CPU used by everything else on the machine meanwhile (other users' builds
  // and tests): busy time − broker − generator − this runner.
  const busy1 = machineBusy()
  const selfUsed = process.cpuUsage(self0)
  const wallSecs = (Date.now() - wall0) / 1000
  let otherCores = null
  if (busy0 != null && busy1 != null && end && base && lg.json?.loadgen_cpu_secs != null) {
    const redisUsed = redisOut?.cpuTotal ?? 0
    const other = busy1 - busy0 - (end.cpu - base.cpu) - redisUsed - lg.json.loadgen_cpu_secs - (selfUsed.user + selfUsed.system) / 1e6
    otherCores = Math.max(0, other / wallSecs)
  }
  const died = b.exited()
  await stopBroker(b)
  if (redis) stopRedis(redis)
  const logText = fs.readFileSync(b.logPath, 'utf8')
  const logTail = logText.trim().split('\n').slice(-5).join('\n')
  // fbroker: journal batches its durable writer refused (buffer full), which
  // the store then never sees.
  const persistRefusals = v.redis ? (logText.match(/journal batch was refused/g) ?? []).length : 0
  const configFiles = Object.fromEntries(
    fs.readdirSync(tmp).filter((f) => /\.(conf|toml|json)$/.test(f)).map((f) => [f, fs.readFileSync(path.join(tmp, f), 'utf8')]),
  )
  fs.rmSync(tmp, { recursive: true, force: true })
  const r = {
    brokerCmd: b.cmdline,
    loadgenCmd: lg.cmdline,
    lg: lg.json ?? {},
    cpu: { ...cpu, end: end?.cpu },
    ...(redis ? { redisCpu: { ...redisCpu, start: redisBase?.cpu, end: redisEnd?.cpu }, redis: redisOut, persistRefusals } : {}),
    markTime,
    cpuTotal: end && base ? end.cpu - base.cpu : null,
    rssBaseKb: base?.rssKb ?? null,
    rssEndKb: end?.rssKb ?? null,
    rssPeakKb: end?.hwmKb ?? null,
    rssHoldKb,
    brokerThreads: end?.threads ?? null,
    otherCores,
    brokerLogTail: logTail || undefined,
    configFiles,
  }
  if (died) r.error = `broker exited during the run (${JSON.stringify(died)}): ${logTail.slice(-300)}`
  else if (!lg.json || lg.json.error) r.error = `loadgen failed (exit ${lg.code ?? lg.sig}): ${lg.json?.error ?? lg.stderr.slice(-300)}`
  const warnings = []
  if (lg.json?.last_error) warnings.push(lg.json.last_error)
  const utils = [lg.json?.loadgen_cpu_util, ...(lg.json?.steps ?? []).map((x) => x.loadgen_cpu_util)].filter((x) => typeof x === 'number')
  if (name === 'fbroker' && addonStamp() !== ADDON_AT_START) warnings.push(`native addon rebuilt since the run started (now ${addonStamp()}): this row measures a different build than earlier fbroker rows`)
  if (otherCores != null && otherCores >= 0.25) warnings.push(`other processes used ${otherCores.toFixed(2)} cores during this run: figures disturbed`)
  if (utils.some((u) => u >= 0.9)) warnings.push(`${v.tool ?? 'load generator'} near CPU saturation (max util ${Math.max(...utils).toFixed(2)}): figures may be generator-bound`)
  if (redis && PIN && opts['redis-core'] === '1') {
    // Redis shares core 1 with the generator: flag steps where the two together filled it.
    const rr = { redisCpu: { ...redisCpu }, markTime }
    const full = (lg.json?.steps ?? []).map((st, k) => [k, (st.loadgen_cpu_util ?? 0) + (coresIn(rr, `step${k}`, 'redisCpu') ?? 0)]).filter(([, c]) => c >= 0.9)
    if (full.length) warnings.push(`core 1 (generator + Redis) near saturation at step ${full.map(([k, c]) => `${k} (${c.toFixed(2)})`).join(', ')}: figures may be bound by core 1`)
  }
  if (persistRefusals > 0) warnings.push(`the broker logged ${persistRefusals} refused journal batch(es) (persistence buffer full): those changes never reached Redis`)
  const unacked = v.redis ? (lg.json?.steps ?? []).reduce((a, st) => a + (st.unacked ?? 0), 0) : 0
  if (unacked > 0) warnings.push(`${unacked} published message(s) never acknowledged (${(lg.json.steps ?? []).map((st) => `step ${st.step}: ${st.unacked ?? 0} of ${st.offered}`).join(', ')})`)
  if (lg.json?.verify && lg.json.verify.missing_acked > 0) warnings.push(`${lg.json.verify.missing_acked} acknowledged message(s) not delivered after reconnect (${lg.json.verify.stop_reason})`)
  if (lg.json?.verify?.first_error) warnings.push(`verify: ${lg.json.verify.first_error}`)
  if (lg.json?.cleanup_error) warnings.push(`cleanup: ${lg.json.cleanup_error}`)
  if (warnings.length) r.warning = warnings.join('; ')
  return r
}

// ---------------------------------------------------------------- formatting

function fmt(x) {
  if (x == null || Number.isNaN(x)) return '—'
  const a = Math.abs(x)
  if (a >= 100) return Math.round(x).toLocaleString('en-US')
  if (a >= 10) return x.toFixed(1)
  return x.toFixed(2)
}
/** A count: always a whole number. */
function ifmt(x) {
  return x == null || Number.isNaN(x) ? '—' : Math.round(x).toLocaleString('en-US')
}
function ratioText(fb, peer) {
  if (fb == null || peer == null || peer === 0 || Number.isNaN(fb) || Number.isNaN(peer)) return '—'
  const x = fb / peer
  return `${x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)}×`
}

function table(v, rows) {
  const metrics = METRICS[v.kind](v)
  const fb = rows.find((r) => r.broker === 'fbroker')
  const fbOk = fb && !fb.missing && !fb.result?.error
  const head = ['broker']
  metrics.push(['other CPU (cores)', 'text', (r) => (r.otherCores == null ? null : r.otherCores.toFixed(2)), false])
  for (const [label, dir] of metrics) {
    if (dir === 'text') head.push(label)
    else head.push(`${label}${dir === 'up' ? ' ↑' : dir === 'down' ? ' ↓' : ''}`, 'fb/peer')
  }
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`]
  const chart = []
  for (const row of rows) {
    if (row.missing) {
      lines.push(`| ${row.broker} | ${row.na ? 'n/a' : 'MISSING'}: ${row.missing} |${' |'.repeat(head.length - 2)}`)
      continue
    }
    if (row.result.error && !row.result.lg?.scenario) {
      lines.push(`| ${row.broker} | FAILED: ${oneLine(row.result.error)} |${' |'.repeat(head.length - 2)}`)
      continue
    }
    const cells = [row.result.error ? `${row.broker} (FAILED: ${oneLine(row.result.error)})` : row.broker]
    for (const [label, dir, get, inChart, lowerBound, emptyText] of metrics) {
      if (dir === 'text') {
        let t
        try { t = get(row.result) } catch {}
        cells.push(t == null ? '—' : oneLine(t))
        continue
      }
      const val = safe(get, row.result)
      const lb = (r) => { try { return Boolean(lowerBound?.(r)) } catch { return false } }
      cells.push(val == null && emptyText ? emptyText(row.result) : (lb(row.result) ? '≥ ' : '') + fmt(val))
      if (row.broker === 'fbroker') cells.push('(ref)')
      else {
        const fv = fbOk ? safe(get, fb.result) : null
        // fbroker's lower bound makes the ratio a lower bound (↑) too; the
        // peer's lower bound makes it an upper bound.
        const fbLb = fbOk && lb(fb.result)
        const peerLb = lb(row.result)
        const rt = ratioText(fv, val)
        cells.push(rt === '—' ? rt : fbLb && !peerLb ? `≥ ${rt}` : peerLb && !fbLb ? `≤ ${rt}` : fbLb && peerLb ? `? ${rt}` : rt)
        if (inChart && dir && fv != null && val != null && fv > 0 && val > 0) {
          // Advantage: > 1 means fbroker is better, whatever the direction.
          chart.push({ metric: `${shortTitle(v)}: ${label}`, peer: row.broker, adv: dir === 'up' ? fv / val : val / fv, dir, bound: fbLb && !peerLb ? '≥ ' : peerLb && !fbLb ? '≤ ' : '' })
        }
      }
    }
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return { md: lines.join('\n'), chart }
}
/**
 * The cost of each transport relative to plain TCP, broker by broker, from
 * the same run: "<broker> TLS ÷ <broker> TCP" for every numeric figure of the
 * sweep (↑ throughput: below 1 = the transport is slower; ↓ latency, CPU,
 * memory: above 1 = the transport costs more).
 */
function transportCostSection(v, rows) {
  const metrics = METRICS[v.kind](v).filter(([, dir]) => dir === 'up' || dir === 'down')
  const head = ['same run', ...metrics.map(([label, dir]) => `${label} ${dir === 'up' ? '↑' : '↓'}`), 'other CPU (cores)']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`]
  const ok = (r) => r && !r.missing && !r.result?.error
  const notes = []
  for (const n of brokers) {
    const base = rows.find((r) => r.broker === n && r.transport === 'tcp')
    for (const tr of v.transports.filter((x) => x !== 'tcp')) {
      const row = rows.find((r) => r.broker === n && r.transport === tr)
      const label = `${n} ${TRANSPORT_NAMES[tr]} ÷ ${n} TCP`
      if (!ok(row) || !ok(base)) {
        const why = !row || row.missing ? `n/a (${oneLine(row?.missing ?? 'not run')})` : !ok(row) ? `n/a (${TRANSPORT_NAMES[tr]} run failed)` : `n/a (TCP run ${base?.missing ? 'missing' : 'failed'})`
        lines.push(`| ${label} | ${why} |${' |'.repeat(head.length - 2)}`)
        continue
      }
      const cells = [label]
      for (const [, , get, , lowerBound, emptyText] of metrics) {
        const a = safe(get, row.result)
        const b = safe(get, base.result)
        const lb = (r) => { try { return Boolean(lowerBound?.(r)) } catch { return false } }
        const show = (x, r) => (x == null && emptyText ? emptyText(r) : `${lb(r) ? '≥ ' : ''}${fmt(x)}`)
        const rt = ratioText(a, b)
        const aLb = lb(row.result)
        const bLb = lb(base.result)
        const mark = rt === '—' ? '' : aLb && !bLb ? '≥ ' : bLb && !aLb ? '≤ ' : aLb && bLb ? '? ' : ''
        cells.push(`${mark}${rt} (${show(a, row.result)} / ${show(b, base.result)})`)
      }
      cells.push(`${row.result.otherCores?.toFixed(2) ?? '—'} / ${base.result.otherCores?.toFixed(2) ?? '—'}`)
      lines.push(`| ${cells.join(' | ')} |`)
    }
  }
  const neg = rows.filter((r) => r.result?.lg?.params?.tls_negotiated).map((r) => `${r.broker} ${TRANSPORT_NAMES[r.transport]}: ${r.result.lg.params.tls_negotiated}`)
  if (neg.length) notes.push(`- TLS negotiated (first connection of each run): ${neg.join('; ')}`)
  notes.push(`- Each cell: ratio (${'<transport>'} figure / TCP figure), both measured in this run, the broker started afresh for each. ↑ columns: below 1 = slower over that transport; ↓ columns: above 1 = it costs more. \`≥\`/\`≤\`: one side of the ratio is a lower bound (its sweep reached the top step); \`?\`: both are.`)
  return { title: `${v.title} — each transport ÷ TCP, same broker, same run`, md: lines.join('\n'), notes }
}

/** Notes under the persist table: the store's setup, what each broker left in it, the reconnect phase. */
function persistNotes(v, rows) {
  const notes = []
  const ok = rows.filter((r) => !r.missing && r.result?.redis)
  const redisVersion = sh('redis-server', ['--version']) ?? 'redis-server (version unknown)'
  const pinned = ok[0]?.result.redis.pinned ?? (PIN && opts['redis-core'] !== 'none' ? `core ${opts['redis-core']}` : 'not pinned')
  notes.push(`- Store: ${redisVersion.split(' ').slice(0, 3).join(' ')}, a fresh server per broker run on its own port (scripts/redis.sh: bind 127.0.0.1, \`--save ''\`, \`--appendonly no\` — no RDB, no AOF, nothing written to disk — everything else Redis' defaults), database 0, pinned with ${pinned} (the load generator's core: the broker keeps core 0 to itself). Same settings for both brokers; neither is asked to wait for disk (no \`appendfsync always\`).`)
  notes.push(`- Step ${v.rateStep} offers ${v.rateLabel} msg/s open loop (the same load for every broker: latency and CPU per message); step ${v.maxStep} publishes as fast as a window of ${v.args[v.args.indexOf('--window') + 1]} unacknowledged messages per publisher allows (closed loop: acked msg/s is the throughput, and its PUBACK latency is mostly queueing: ≈ in-flight ÷ rate). CPU µs/msg = CPU seconds of the broker process (or of redis-server) between the step's marks ÷ messages acknowledged in it; "broker / Redis cores @max" = their CPU seconds ÷ the step's wall time.`)
  notes.push(`- "delivered after reconnect": distinct messages the ${v.args[v.args.indexOf('--subscribers') + 1]} sessions received when they reconnected (clean session 0) ÷ messages acknowledged × sessions per message, counted until all had arrived, nothing new came for ${Number(v.args[v.args.indexOf('--verify-idle-ms') + 1]) / 1000} s, or ${v.args[v.args.indexOf('--verify-max-secs') + 1]} s passed. "queued in Redis after reconnect": then, with the sessions still connected and every message acknowledged, the generator pauses; once Redis has been quiet for 3 s the runner sums the lengths of all list keys (both brokers keep session queues as Redis lists: fbroker \`<prefix>c:{id}:q\`, aedes-persistence-redis \`outgoing:<id>\`), which should be 0, and counts the keys. "Redis keys after cleanup": DBSIZE once Redis had gone quiet after the run, whose last act is a clean-session connect of every session id (which drops the sessions).`)
  for (const r of ok) {
    const vf = r.result.lg.verify
    const red = r.result.redis
    const shapes = Object.entries(red.keyShapes ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => `\`${k}\` ${ifmt(n)}`).join(', ')
    const parts = []
    if (vf) parts.push(`reconnect: ${ifmt(vf.delivered)} of ${ifmt(vf.expected_acked)} in ${vf.secs_to_last_delivery} s (${ifmt(vf.delivered_rate)} msg/s), stop: ${vf.stop_reason}; sessions present ${vf.subscribers - vf.sessions_not_present}/${vf.subscribers}, DUP-flagged ${ifmt(vf.dup_flagged)}, out of order ${ifmt(vf.out_of_order)}`)
    parts.push(`Redis after the run (read once it had been quiet for 3 s, ${red.settleSecs?.toFixed(1) ?? '?'} s after the generator exited): ${ifmt(red.keysAfter)} keys${shapes ? ` (${shapes})` : ''}, peak memory ${red.usedMemoryPeak ?? '?'}, CPU over the whole run ${red.cpuTotal == null ? '?' : red.cpuTotal.toFixed(2)} s`)
    const cmds = Object.entries(red.commands ?? {}).filter(([k]) => !/^(info|dbsize|ping|hello|config\|get|scan)$/.test(k)).sort((a, b) => b[1].calls - a[1].calls)
    const published = (r.result.lg.steps ?? []).reduce((a, st) => a + (st.acked ?? 0), 0)
    if (cmds.length && published) parts.push(`Redis commands over the run (calls inside Lua scripts included) per acknowledged message: ${cmds.slice(0, 8).map(([k, c]) => `${k} ${(c.calls / published).toFixed(2)}`).join(', ')}`)
    if (r.result.persistRefusals) parts.push(`${r.result.persistRefusals} refused journal batches in the broker log`)
    notes.push(`- ${r.broker}: ${parts.join('; ')}.`)
  }
  return notes
}

/**
 * The crosscheck figures of one QoS side by side: for each tool (the Go and
 * Rust third-party tools, bench/loadgen shaped like them) its msg/s and the
 * broker's CPU µs per message, each with fbroker ÷ peer from the same tool.
 */
function crosscheckSideBySide(qos, cc) {
  const cols = cc.map(({ variant: v, rows }) => {
    const ms = METRICS[v.kind](v)
    return { v, rows, rate: ms.find(([l]) => l.startsWith('msg/s')), cpu: ms.find(([l]) => l === 'CPU µs/msg'), name: shortTitle(v).replace(/^crosscheck /, '').replace(/ q\d$/, '') }
  })
  const head = ['broker']
  for (const c of cols) head.push(`${c.name} msg/s ↑`, 'fb/peer')
  for (const c of cols) head.push(`${c.name} CPU µs/msg ↓`, 'fb/peer')
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`]
  const val = (c, n, m) => {
    const r = c.rows.find((x) => x.broker === n)
    if (!r) return { text: '—', x: null }
    if (r.missing) return { text: 'MISSING', x: null }
    if (r.result.error) return { text: 'FAILED', x: null }
    const x = safe(m[2], r.result)
    return { text: fmt(x), x }
  }
  for (const n of brokers) {
    const cells = [n]
    for (const key of ['rate', 'cpu']) {
      for (const c of cols) {
        const a = val(c, n, c[key])
        const f = val(c, 'fbroker', c[key])
        cells.push(a.text, n === 'fbroker' ? '(ref)' : ratioText(f.x, a.x))
      }
    }
    lines.push(`| ${cells.join(' | ')} |`)
  }
  const notes = ['- Same load shape for every tool (10 publishing clients, 16 B, no subscriber), each tool with its own client library and pacing: the Go tool waits for each publish to complete before the next (one in flight), the Rust tool keeps up to 100 QoS 1 messages in flight and stops its clock when the last publish is queued in its client, bench/loadgen keeps a window of 100 (QoS 1) and writes one message per syscall. Compare ratios down a column (same tool), not across columns.']
  return { title: `crosscheck side by side, QoS ${qos}: third-party tools and bench/loadgen`, md: lines.join('\n'), notes }
}

function safe(get, r) {
  try {
    const x = get(r)
    return typeof x === 'number' && Number.isFinite(x) ? x : null
  } catch {
    return null
  }
}
function oneLine(s) {
  return String(s).replace(/\s+/g, ' ').replace(/\|/g, '/').slice(0, 160)
}
function shortTitle(v) {
  if (v.transports) return `fanin 10p${v.transport ? ` ${v.transport}` : ''}`
  if (v.scenario === 'crosscheck') return `crosscheck ${v.tool === 'mqtt-benchmark' ? 'Go tool' : v.tool === 'mqtt-benchmark-rs' ? 'Rust tool' : 'loadgen'} q${v.qos}`
  return v.title.split(':')[0] + (v.args.includes('--publishers') ? ` ${v.args[v.args.indexOf('--publishers') + 1]}p` : '') + (v.kind === 'fanout' ? ` q${v.args[v.args.indexOf('--qos') + 1]}` : '')
}

// ---------------------------------------------------------------- chart

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function chartSvg(points, title) {
  const peers = [...new Set(points.map((p) => p.peer))]
  const metrics = [...new Set(points.map((p) => p.metric))]
  const colors = { mosquitto: '#3b6fb6', aedes: '#3a9a5b', rumqttd: '#c8553d' }
  const barH = 16
  const groupGap = 12
  const left = 330
  const plotW = 560
  const top = 86
  const W = left + plotW + 130
  const groupH = peers.length * barH + groupGap
  const H = top + metrics.length * groupH + 50
  const maxAbs = Math.max(2, ...points.map((p) => Math.abs(Math.log2(p.adv))))
  const lim = Math.min(8, Math.ceil(maxAbs)) // ±lim in log2 units
  const x = (adv) => left + plotW / 2 + (Math.max(-lim, Math.min(lim, Math.log2(adv))) / lim) * (plotW / 2)
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, sans-serif">`)
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`)
  out.push(`<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">${esc(title)}</text>`)
  out.push(`<text x="${W / 2}" y="46" text-anchor="middle" font-size="12" fill="#444">fbroker advantage per metric, log scale: right of 1× = fbroker better (throughput: fbroker/peer; latency, CPU, memory: peer/fbroker)</text>`)
  // legend
  let lx = left
  for (const p of peers) {
    out.push(`<rect x="${lx}" y="58" width="12" height="12" fill="${colors[p] ?? '#888'}"/><text x="${lx + 17}" y="69" font-size="12">${esc(p)}</text>`)
    lx += 110
  }
  // grid
  for (let e = -lim; e <= lim; e++) {
    const gx = left + plotW / 2 + (e / lim) * (plotW / 2)
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${H - 40}" stroke="${e === 0 ? '#222' : '#ddd'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`)
    const label = e >= 0 ? `${2 ** e}×` : `1/${2 ** -e}×`
    if (lim > 4 && e % 2 !== 0) continue
    out.push(`<text x="${gx}" y="${H - 24}" text-anchor="middle" font-size="11" fill="#444">${label}</text>`)
  }
  metrics.forEach((m, gi) => {
    const gy = top + gi * groupH
    out.push(`<text x="${left - 10}" y="${gy + (peers.length * barH) / 2 + 4}" text-anchor="end" font-size="12">${esc(m)}</text>`)
    peers.forEach((p, pi) => {
      const pt = points.find((q) => q.metric === m && q.peer === p)
      if (!pt) return
      const y = gy + pi * barH
      const x0 = x(1)
      const x1 = x(pt.adv)
      const clipped = Math.abs(Math.log2(pt.adv)) > lim
      out.push(`<rect x="${Math.min(x0, x1)}" y="${y + 2}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${barH - 4}" fill="${colors[p] ?? '#888'}"/>`)
      const txt = `${pt.bound ?? ''}${pt.adv >= 10 ? pt.adv.toFixed(0) : pt.adv.toFixed(2)}×${clipped ? ' (clipped)' : ''}`
      const tx = pt.adv >= 1 ? x1 + 4 : x1 - 4
      out.push(`<text x="${tx}" y="${y + barH - 4}" font-size="10" text-anchor="${pt.adv >= 1 ? 'start' : 'end'}" fill="#222">${esc(txt)}</text>`)
    })
  })
  out.push(`<text x="${left + plotW / 2}" y="${H - 8}" text-anchor="middle" font-size="11" fill="#444">← peer better · fbroker better →</text>`)
  out.push('</svg>')
  return out.join('\n')
}

// ---------------------------------------------------------------- main

function machine() {
  const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : ''
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] ?? os.cpus()[0]?.model ?? 'unknown'
  return {
    nproc: sh('nproc', []) ?? String(os.availableParallelism()),
    cpu: model.trim(),
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    rustc: sh('rustc', ['-V']) ?? 'unknown',
    openFiles: sh('sh', ['-c', 'ulimit -Hn']) ?? '?',
  }
}

async function main() {
  const t0 = Date.now()
  if (process.platform !== 'linux') die('Linux only (reads /proc)')
  if (has('cargo')) {
    const b = spawnSync('cargo', ['build', '--release', '--quiet', '--manifest-path', LOADGEN_MANIFEST], { stdio: 'inherit' })
    if (b.status !== 0) die('building the load generator failed')
  }
  if (!fs.existsSync(LOADGEN)) die(`${LOADGEN} missing: run bench/setup.sh`)

  const infos = Object.fromEntries(brokers.map((n) => [n, locate(n)]))
  for (const [n, i] of Object.entries(infos)) {
    process.stderr.write(i.missing ? `MISSING ${n}: ${i.missing}\n` : `found   ${n}: ${i.version}\n`)
  }
  const toolText = (k) => (fs.existsSync(TOOLS[k].bin) ? `${k} ${TOOLS[k].version()} (${TOOLS[k].about})` : null)
  if (scenarios.includes('crosscheck')) {
    for (const k of Object.keys(TOOLS)) process.stderr.write(toolText(k) ? `found   ${toolText(k)}\n` : `MISSING ${k}: ${path.relative(ROOT, TOOLS[k].bin)} (bench/setup.sh)\n`)
  }
  if (!PIN) process.stderr.write('note: CPU pinning off (--no-pin, fewer than 2 cores, or no taskset)\n')

  const variants = plan(PROFILE)
  if (variants.some((v) => v.transports?.some((t) => t === 'tls' || t === 'wss'))) {
    CERTS = makeCerts()
    process.stderr.write(CERTS.error ? `certificates: ${CERTS.error}\n` : `certificates: scripts/gencert.sh → ${CERTS.dir}\n`)
  }
  const results = []
  for (const v of variants) {
    process.stderr.write(`\n== ${v.title}\n`)
    const rows = []
    const toolMissing = v.tool && !fs.existsSync(TOOLS[v.tool].bin)
    if (toolMissing) process.stderr.write(`   MISSING ${path.relative(ROOT, TOOLS[v.tool].bin)} (bench/setup.sh installs it): scenario skipped\n`)
    for (const n of brokers) {
      const info = infos[n]
      // Transport variants: each broker runs every transport back to back.
      for (const transport of v.transports ?? ['tcp']) {
        const label = v.transports ? `${n}/${transport}` : n
        if (toolMissing) {
          rows.push({ broker: n, transport, missing: `load tool ${path.relative(ROOT, TOOLS[v.tool].bin)} not installed (bench/setup.sh)` })
          continue
        }
        if (info.missing) {
          rows.push({ broker: n, transport, missing: info.missing })
          continue
        }
        if (v.redis) {
          const why = info.persist ? info.persist() : 'n/a: no Redis persistence'
          if (why) {
            const na = why.startsWith('n/a')
            process.stderr.write(`   ${label.padEnd(14)} ${why}\n`)
            rows.push({ broker: n, transport, missing: why.replace(/^(n\/a|MISSING): /, ''), na })
            continue
          }
          if (!has('redis-server') && !fs.existsSync('/usr/bin/redis-server')) {
            rows.push({ broker: n, transport, missing: 'redis-server not installed (apt-get install redis-server; scripts/redis.sh installs it when run as root)' })
            continue
          }
        }
        const unsupported = info.supports?.(transport)
        if (unsupported) {
          process.stderr.write(`   ${label.padEnd(14)} n/a: ${unsupported}\n`)
          rows.push({ broker: n, transport, missing: unsupported, na: true })
          continue
        }
        const t = Date.now()
        let result = await runOne(n, info, v, transport)
        if (result.error?.startsWith('broker exited during the run')) {
          process.stderr.write(`   ${label.padEnd(14)} broker exited during the run; retrying once\n`)
          const first = result.error
          result = await runOne(n, info, v, transport)
          result.retriedAfter = first
          result.warning = [`retried: first attempt failed (${oneLine(first).slice(0, 80)})`, result.warning].filter(Boolean).join('; ')
        }
        process.stderr.write(`   ${label.padEnd(14)} ${((Date.now() - t) / 1000).toFixed(1)} s${result.error ? `  ERROR: ${oneLine(result.error)}` : ''}${result.warning ? `  (warning: ${oneLine(result.warning)})` : ''}\n`)
        rows.push({ broker: n, transport, result })
      }
    }
    results.push({ variant: v, rows })
  }

  // ---- report
  const date = new Date().toISOString().slice(0, 10)
  // A run of the default scenario set is `<date>[-quick]`; a subset gets its
  // scenarios in the name (transports only: `-transports`, persist only:
  // `-persistence`), so a targeted run
  // does not overwrite the full report of the day. --out-name overrides.
  const defaultSet = DEFAULT_SCENARIOS.every((x) => scenarios.includes(x)) && scenarios.length === DEFAULT_SCENARIOS.length
  const transportOnly = scenarios.every((x) => x in TRANSPORT_SCENARIOS)
  const suffix = defaultSet ? '' : transportOnly ? '-transports' : scenarios.join() === 'persist' ? '-persistence' : `-${scenarios.join('+')}`
  const stem = opts['out-name'] || `${date}${PROFILE === 'quick' ? '-quick' : ''}${suffix}`
  fs.mkdirSync(opts['out-dir'], { recursive: true })
  const mdPath = path.join(opts['out-dir'], `${stem}.md`)
  const pngPath = path.join(opts['out-dir'], `${stem}.png`)
  const svgPath = path.join(opts['out-dir'], `${stem}.svg`)
  const jsonPath = path.join(opts['out-dir'], `${stem}.json`)

  const sections = []
  const chart = []
  for (const { variant: v, rows } of results) {
    for (const tr of v.transports ?? [null]) {
      const vt = tr ? { ...v, transport: tr, title: `${v.title} — over ${TRANSPORT_NAMES[tr]}` } : v
      const rs = tr ? rows.filter((r) => r.transport === tr) : rows
      const t = table(vt, rs)
      chart.push(...t.chart)
      const notes = rs
        .filter((r) => r.result?.warning || r.result?.error)
        .map((r) => `- ${r.broker}: ${[r.result.error, r.result.warning].filter(Boolean).map(oneLine).join('; ')}`)
      if (v.redis) notes.push(...persistNotes(v, rs))
      sections.push({ title: vt.title, md: t.md, notes })
    }
    if (v.transports) sections.push(transportCostSection(v, rows))
  }
  for (const qos of [1, 0]) {
    const cc = results.filter(({ variant: v }) => v.scenario === 'crosscheck' && v.qos === qos)
    if (cc.length >= 2) sections.push(crosscheckSideBySide(qos, cc))
  }
  const wall = (Date.now() - t0) / 1000
  const m = machine()
  const missing = brokers.filter((n) => infos[n].missing)
  const cmdline = `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim()

  let md = `# fbroker benchmark — ${date} (${PROFILE})\n\n`
  md += `Ratios are **fbroker ÷ peer** from the same run (↑ higher is better, ↓ lower is better): for ↑ columns a ratio above 1 favours fbroker, for ↓ columns a ratio below 1 does. See bench/README.md for the method.\n\n`
  for (const s of sections) {
    md += `## ${s.title}\n\n${s.md}\n\n`
    if (s.notes.length) md += `${s.notes.join('\n')}\n\n`
  }
  md += `## Chart\n\n![fbroker vs peers](${path.basename(pngPath)})\n\n`
  md += `## Machine\n\n- nproc: ${m.nproc}\n- CPU: ${m.cpu}\n- kernel: ${m.kernel}\n- memory: ${m.memory}\n- node: ${m.node}; ${m.rustc}\n- open-file hard limit: ${m.openFiles}\n`
  md += `- pinning: ${PIN ? 'broker `taskset -c 0`, load generator `taskset -c 1`' : 'off'}\n- wall time of this run: ${wall.toFixed(0)} s\n\n`
  md += `## Brokers\n\n`
  for (const n of brokers) {
    const i = infos[n]
    md += i.missing ? `- **${n}**: MISSING — ${i.missing}\n` : `- **${n}**: ${i.version}. ${i.config}\n`
  }
  if (variants.some((v) => v.redis)) md += `- **Redis** (persist): ${sh('redis-server', ['--version']) ?? 'redis-server not found'}; one fresh server per broker run, started by scripts/redis.sh (\`--bind 127.0.0.1 --save '' --appendonly no\`, otherwise defaults)\n`
  if (scenarios.includes('crosscheck')) {
    for (const k of Object.keys(TOOLS)) md += `- **crosscheck load tool ${k}**: ${toolText(k) ?? `MISSING (${path.relative(ROOT, TOOLS[k].bin)}; bench/setup.sh)`}\n`
  }
  const shown = new Set()
  for (const { rows } of results) {
    for (const r of rows) {
      if (r.missing || shown.has(r.broker) || !r.result.configFiles) continue
      shown.add(r.broker)
      for (const [f, text] of Object.entries(r.result.configFiles)) {
        md += `\n<details><summary>${r.broker}: ${f} (port differs per run)</summary>\n\n\`\`\`\n${text.trim()}\n\`\`\`\n</details>\n`
      }
    }
  }
  md += `\n## Commands\n\n\`\`\`\nbash bench/setup.sh\n${cmdline}\n\`\`\`\n\nPer run (ports are picked free at run time; config files are written to a temp dir):\n\n\`\`\`\n`
  for (const { variant: v, rows } of results) {
    for (const r of rows) {
      if (r.missing || !r.result.brokerCmd) continue
      md += `# ${shortTitle(v)} / ${r.broker}${v.transports ? ` / ${r.transport}` : ''}\n${r.result.brokerCmd}\n${r.result.loadgenCmd}\n`
    }
  }
  md += '```\n'
  fs.writeFileSync(mdPath, md)
  fs.writeFileSync(jsonPath, JSON.stringify({ date, profile: PROFILE, machine: m, brokers: Object.fromEntries(Object.entries(infos).map(([k, i]) => [k, i.missing ? { missing: i.missing } : { version: i.version, config: i.config }])), results: results.map(({ variant, rows }) => ({ title: variant.title, args: variant.args, ...(variant.transports ? { transports: variant.transports } : {}), ...(variant.tool ? { tool: variant.tool } : {}), rows })) }, null, 2) + '\n')

  let chartNote = ''
  if (chart.length) {
    fs.writeFileSync(svgPath, chartSvg(chart, `fbroker vs peers — ${date} (${PROFILE})`))
    if (has('rsvg-convert')) {
      const r = spawnSync('rsvg-convert', ['-w', '1100', '-o', pngPath, svgPath], { encoding: 'utf8' })
      chartNote = r.status === 0 ? `chart: ${path.relative(ROOT, pngPath)}` : `chart: rsvg-convert failed (${r.stderr.trim()}); SVG at ${path.relative(ROOT, svgPath)}`
    } else chartNote = `chart: rsvg-convert missing (bench/setup.sh installs librsvg2-bin); SVG at ${path.relative(ROOT, svgPath)}`
  } else chartNote = 'chart: no peer results to compare'

  for (const s of sections) {
    process.stdout.write(`\n### ${s.title}\n\n${s.md}\n`)
    if (s.notes.length) process.stdout.write(`${s.notes.join('\n')}\n`)
  }
  process.stdout.write(`\n${missing.length ? `MISSING: ${missing.join(', ')}\n` : ''}report: ${path.relative(ROOT, mdPath)}\n${chartNote}\nwall time: ${wall.toFixed(0)} s\n`)
}

main().catch((e) => {
  process.stderr.write(`run.mjs: ${e.stack || e}\n`)
  process.exit(1)
})
