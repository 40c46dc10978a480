#!/usr/bin/env node
// Fan-in throughput and CPU cost of fbroker's authorization paths, as ratios
// against the same broker without any: an ACL file of 1,000 rules (checked in
// Rust), and an authorizePublish plugin that allows everything (batched
// FFI round trip), without and with its per-topic cache. Same method as
// bench/run.mjs: broker pinned to core 0, load generator to core 1, loopback.
//
//   node bench/auth-overhead.mjs [--rates 25k,50k,...] [--step-secs 2]
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const loadgen = join(root, 'bench/loadgen/target/release/fbroker-loadgen')
const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : dflt
}
const rates = opt('--rates', '25k,50k,100k,200k,400k,800k')
const stepSecs = opt('--step-secs', '2')
const fixedRate = opt('--cpu-rate', '50k')
const clkTck = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
const tmp = mkdtempSync(join(tmpdir(), 'fbroker-auth-bench-'))

// 999 rules that never match the benchmark's topics, then the one that does:
// every check walks a realistically large rule set.
const aclLines = []
for (let i = 0; i < 500; i++) aclLines.push(`topic readwrite fleet/${i}/+/telemetry`)
for (let i = 0; i < 499; i++) aclLines.push(`pattern readwrite tenants/${i}/%c/#`)
aclLines.push('topic readwrite bench/#')
const aclFile = join(tmp, 'acl-1000.conf')
writeFileSync(aclFile, aclLines.join('\n') + '\n')

const variants = [
  { name: 'no authorization', config: {} },
  { name: 'ACL file, 1,000 rules', config: { acl_file: aclFile } },
  { name: 'authorizePublish plugin (allow all), no cache', config: { plugins: [join(root, 'bench/auth/allow-all-plugin.mjs')] } },
  {
    name: 'authorizePublish plugin (allow all), 1 s cache',
    config: { plugins: [join(root, 'bench/auth/allow-all-plugin.mjs')], authorize_publish_cache_ttl_ms: 1000 },
  },
]

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)))
      c.on('error', () => r(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`broker did not open port ${port}`)
}

const cpuSecs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / clkTck
}

function run(cmd, argv) {
  const r = spawnSync('taskset', ['-c', '1', cmd, ...argv], { encoding: 'utf8', timeout: 300_000 })
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

const rows = []
for (const v of variants) {
  const port = await freePort()
  const cfg = join(tmp, `${rows.length}.json`)
  writeFileSync(cfg, JSON.stringify({ max_inflight_messages: 20, max_queued_messages: 1000, max_connections: 0, ...v.config }))
  const broker = spawn('taskset', ['-c', '0', process.execPath, join(root, 'packages/fbroker/bin/fbroker.js'), 'start', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', '--config', cfg], { stdio: 'ignore' })
  try {
    await waitPort(port)
    const common = ['--host', '127.0.0.1', '--port', String(port), '--publishers', '100', '--payload', '16']
    const sweep = run(loadgen, ['fanin-sweep', ...common, '--rates', rates, '--duration-secs', stepSecs, '--drain-max-secs', '1', '--drain-idle-ms', '300'])
    const before = cpuSecs(broker.pid)
    const fixed = run(loadgen, ['fanin', ...common, '--rate', fixedRate, '--duration-secs', '3', '--drain-max-secs', '1'])
    const cpu = cpuSecs(broker.pid) - before
    const delivered = fixed.delivered ?? fixed.counts?.delivered ?? 0
    rows.push({
      name: v.name,
      maxSustained: sweep.max_sustained_rate ?? 0,
      topOfRange: sweep.stop_reason === 'top of range',
      cpuUsPerMsg: delivered > 0 ? (cpu * 1e6) / delivered : NaN,
    })
  } finally {
    broker.kill('SIGTERM')
    await new Promise((r) => broker.once('exit', r))
  }
}

const base = rows[0]
const fmt = (n) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: 2 }) : 'n/a')
const lines = [
  `| variant | max sustained msg/s ↑ | ÷ no authorization | CPU µs/msg @${fixedRate} ↓ | ÷ no authorization |`,
  '| --- | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.name} | ${r.topOfRange ? '≥ ' : ''}${fmt(r.maxSustained)} | ${fmt(r.maxSustained / base.maxSustained)}× | ${fmt(r.cpuUsPerMsg)} | ${fmt(r.cpuUsPerMsg / base.cpuUsPerMsg)}× |`),
]
const date = new Date().toISOString().slice(0, 10)
const report = [
  `# fbroker authorization overhead — ${date}`,
  '',
  `Fan-in, 100 publishers → 1 subscriber on \`bench/+/x\`, QoS 0, 16 B; rate sweep ${rates} (${stepSecs} s a step; sustained = delivered ≥ 99.9 %), CPU at a fixed ${fixedRate} msg/s. Broker pinned to core 0, load generator to core 1. Ratios are against the same broker without authorization, in the same run. A "≥" value hit the top of the sweep, so that ratio is a lower bound.`,
  '',
  ...lines,
  '',
].join('\n')
mkdirSync(join(root, 'bench/results'), { recursive: true })
writeFileSync(join(root, 'bench/results', `${date}-auth.md`), report)
console.log(report)
