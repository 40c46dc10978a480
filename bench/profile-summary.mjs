#!/usr/bin/env node
// Summarises a broker profile taken by bench/profile-fanin.sh as Markdown.
//
//   node bench/profile-summary.mjs --perf-script FILE --pid PID [--meta FILE.json] [--top 15]
//   node bench/profile-summary.mjs --cpuprofile FILE.cpuprofile [--meta FILE.json]
//
// --perf-script: output of `perf script -F comm,tid,ip,sym,dso` for a
// `perf record -g -p PID` of the broker (node started with --perf-basic-prof,
// so JIT-compiled JS has names). Every sample is one stack; frames are
// classified by the object they are in:
//   js      JIT-compiled JS (perf-PID.map, [JIT]) and V8 builtins (Builtins_*:
//           the interpreter and the built-in JS functions), i.e. JS running
//   rust    the fbroker addon (*.node): engine, codec, tokio, std
//   node    the rest of the node binary: V8 runtime (C++, GC), libuv, node's C++
//   libc    libc, libpthread, the dynamic loader
//   kernel  [kernel.kallsyms] (syscalls, loopback TCP)
//   other   anything else (libstdc++, unresolved)
// --cpuprofile: a V8 .cpuprofile (node --cpu-prof), the fallback where perf
// does not work: it sees the JS thread only.
// Node built-ins only.

import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    'perf-script': { type: 'string' },
    cpuprofile: { type: 'string' },
    pid: { type: 'string' },
    meta: { type: 'string' },
    top: { type: 'string', default: '15' },
  },
})
const TOP = Number(opts.top) || 15
const meta = opts.meta ? JSON.parse(fs.readFileSync(opts.meta, 'utf8')) : {}

const pct = (n, d) => (d ? `${((100 * n) / d).toFixed(1)} %` : '—')
const pctNum = (n, d) => (d ? (100 * n) / d : 0)

function header(title) {
  let md = `# ${title}\n\n`
  if (meta.date) md += `Taken ${meta.date} with \`${meta.command ?? 'bash bench/profile-fanin.sh'}\`.\n\n`
  const rows = [
    ['load', meta.load],
    ['broker', meta.broker],
    ['profiler', meta.profiler],
    ['broker CPU during the load', meta.brokerCores != null ? `${Number(meta.brokerCores).toFixed(2)} cores (of the 1 it is pinned to)` : null],
    ['load generator result', meta.loadgen],
    ['machine', meta.machine],
  ].filter(([, v]) => v != null && v !== '')
  if (rows.length) md += `| | |\n| --- | --- |\n${rows.map(([k, v]) => `| ${k} | ${String(v).replace(/\|/g, '/')} |`).join('\n')}\n\n`
  if (meta.deliveredPct != null && meta.deliveredPct < 99) md += `Note: only ${meta.deliveredPct} % of the offered messages were delivered in this run (QoS 0: the broker drops the oldest of 1,000 queued messages when the subscriber falls behind), so the profile includes the drop path. Where the broker used well under one core (above), the drops are not a CPU limit; otherwise re-run on a quieter machine.\n\n`
  return md
}

// ---------------------------------------------------------------- perf

function classify(sym, dso) {
  const base = path.basename(dso || '')
  if (/^perf-\d+\.map$/.test(base) || dso.startsWith('[JIT]')) return 'js'
  if (/^(JS|LazyCompile|Function|Builtin|BytecodeHandler|Script|InterpretedFunction|Eval|RegExp|Stub|Handler):/.test(sym)) return 'js'
  if (dso === '[kernel.kallsyms]' || dso.startsWith('[kernel')) return 'kernel'
  if (base.endsWith('.node')) return base.includes('fbroker') ? 'rust' : 'other'
  if (base === 'node' || base.startsWith('node')) return sym.startsWith('Builtins_') ? 'js' : 'node'
  if (/^(libc|libpthread|libm|librt|libdl|ld-linux)[.-]/.test(base)) return 'libc'
  return 'other'
}

function cleanSym(sym) {
  return sym
    .replace(/\+0x[0-9a-f]+$/, '')
    .replace(/::h[0-9a-f]{16}$/, '') // legacy Rust mangling hash
    .replace(/\{\{closure\}\}/g, '{closure}')
}

function parsePerf(text) {
  const samples = []
  let cur = null
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      if (cur) samples.push(cur)
      cur = null
      continue
    }
    if (!/^\s/.test(line)) {
      // "comm  tid" (comm may contain spaces)
      const m = line.trim().match(/^(.*?)\s+(\d+)(?:\/(\d+))?\s*$/) || line.trim().match(/^(.*?)\s+(\d+)/)
      if (cur) samples.push(cur)
      cur = { comm: m ? m[1].trim() : line.trim(), tid: m ? Number(m[3] ?? m[2]) : 0, frames: [] }
      continue
    }
    if (!cur) continue
    // "\t    7f12345678 symbol+0x12 (/path/to/dso)"
    const m = line.trim().match(/^([0-9a-f]+)\s+(.*?)\s+\((.*)\)$/)
    if (!m) continue
    const sym = m[2] || '[unknown]'
    cur.frames.push({ sym, dso: m[3], cat: classify(sym, m[3]) })
  }
  if (cur) samples.push(cur)
  return samples.filter((s) => s.frames.length)
}

function threadGroup(s, pid) {
  if (s.tid === pid) return 'node main thread (JS)'
  if (s.comm.startsWith('fbroker-io')) return 'fbroker-io (tokio workers)'
  return `other node threads (${s.comm})`
}

function count(map, key, n = 1) {
  map.set(key, (map.get(key) ?? 0) + n)
}

function sorted(map) {
  return [...map.entries()].sort((a, b) => b[1] - a[1])
}

function perfSummary(text, pid) {
  const samples = parsePerf(text)
  const total = samples.length
  const CATS = ['rust', 'kernel', 'libc', 'node', 'js', 'other']
  const selfCat = new Map()
  const selfCatAttributed = new Map()
  const byThread = new Map()
  const threadCat = new Map()
  const rustSelf = new Map()
  const kernelSelf = new Map()
  const nodeSelf = new Map()
  const jsSelf = new Map()
  const syscallEntry = new Map()
  const jsStacks = []
  let jsOnStack = 0
  let jsLeaf = 0
  for (const s of samples) {
    const leaf = s.frames[0]
    count(selfCat, leaf.cat)
    // Kernel time is charged to the first user-space frame that entered it.
    const user = s.frames.find((f) => f.cat !== 'kernel')
    count(selfCatAttributed, user ? user.cat : 'kernel')
    const tg = threadGroup(s, pid)
    count(byThread, tg)
    count(threadCat, `${tg}\u0000${leaf.cat}`)
    if (user && user.cat === 'libc') count(syscallEntry, `${cleanSym(user.sym)} (${tg})`)
    if (s.frames.some((f) => f.cat === 'js')) {
      jsOnStack++
      if (jsStacks.length < 5) jsStacks.push(`${tg}: ${s.frames.slice(0, 8).map((f) => `${cleanSym(f.sym)} [${f.cat}]`).join(' ← ')}`)
    }
    if (leaf.cat === 'js') {
      jsLeaf++
      count(jsSelf, cleanSym(leaf.sym))
    }
    if (leaf.cat === 'rust') count(rustSelf, cleanSym(leaf.sym))
    if (leaf.cat === 'kernel') count(kernelSelf, cleanSym(leaf.sym))
    if (leaf.cat === 'node') count(nodeSelf, cleanSym(leaf.sym))
  }
  const rustTotal = selfCat.get('rust') ?? 0

  let md = header('fbroker fan-in profile')
  md += `## Headline\n\n`
  md += `- **${total.toLocaleString('en-US')}** CPU samples of the broker process (all threads).\n`
  md += `- **JS frames anywhere on the stack: ${jsOnStack} samples = ${pct(jsOnStack, total)}**; JS as the running frame (self): ${jsLeaf} = ${pct(jsLeaf, total)}.\n`
  md += `- Rust (fbroker addon) self time: ${pct(rustTotal, total)}; with the kernel and libc time it calls into: ${pct((selfCatAttributed.get('rust') ?? 0) + (selfCatAttributed.get('libc') ?? 0), total)} (kernel time attributed to the first user-space frame; see below for libc).\n`
  md += `- Samples on the node main thread (where all JS runs): ${pct(sorted(byThread).filter(([k]) => k.startsWith('node main')).reduce((a, [, n]) => a + n, 0), total)}.\n\n`

  md += `## Self time by category\n\n`
  md += `| category | self | self, kernel time attributed to its caller |\n| --- | ---: | ---: |\n`
  const label = { rust: 'Rust: fbroker addon (engine, tokio, std)', kernel: 'kernel (syscalls, loopback TCP)', libc: 'libc / libpthread', node: 'node binary, non-JS (V8 runtime, GC, libuv, node C++)', js: 'JS (JIT code, V8 builtins / interpreter)', other: 'other (libstdc++, unresolved)' }
  for (const c of CATS) md += `| ${label[c]} | ${pct(selfCat.get(c) ?? 0, total)} | ${pct(selfCatAttributed.get(c) ?? 0, total)} |\n`
  md += `\n## By thread (self category)\n\n| thread | samples | ${CATS.join(' | ')} |\n| --- | ---: |${CATS.map(() => ' ---: |').join('')}\n`
  for (const [tg, n] of sorted(byThread)) {
    md += `| ${tg} | ${n} (${pct(n, total)}) | ${CATS.map((c) => pct(threadCat.get(`${tg}\u0000${c}`) ?? 0, n)).join(' | ')} |\n`
  }
  md += `\n## Top ${TOP} Rust symbols by self time\n\n% of all broker samples; % of Rust self time.\n\n| # | symbol | % of all | % of Rust |\n| ---: | --- | ---: | ---: |\n`
  sorted(rustSelf).slice(0, TOP).forEach(([sym, n], i) => {
    md += `| ${i + 1} | \`${sym.replace(/\|/g, '/').replace(/`/g, "'")}\` | ${pct(n, total)} | ${pct(n, rustTotal)} |\n`
  })
  md += `\n## Top 10 kernel symbols by self time\n\n| symbol | % of all |\n| --- | ---: |\n`
  for (const [sym, n] of sorted(kernelSelf).slice(0, 10)) md += `| \`${sym}\` | ${pct(n, total)} |\n`
  md += `\n## Top 10 libc entry points, with the kernel time below them\n\nWhere the time in libc and in the kernel is spent from (the libc function that made the system call, and the thread).\n\n| libc function (thread) | % of all |\n| --- | ---: |\n`
  for (const [sym, n] of sorted(syscallEntry).slice(0, 10)) md += `| \`${sym}\` | ${pct(n, total)} |\n`
  md += `\n## Top 10 node-binary (non-JS) symbols by self time\n\n| symbol | % of all |\n| --- | ---: |\n`
  for (const [sym, n] of sorted(nodeSelf).slice(0, 10)) md += `| \`${sym.replace(/\|/g, '/')}\` | ${pct(n, total)} |\n`
  if (jsStacks.length) md += `\n## Samples with a JS frame on the stack (first ${jsStacks.length}, innermost first)\n\n${jsStacks.map((x) => `- ${x.replace(/\|/g, '/')}`).join('\n')}\n`
  md += `\n## JS symbols by self time\n\n`
  if (!jsSelf.size) md += `None: no sample had JS as the running frame.\n`
  else {
    md += `| symbol | % of all |\n| --- | ---: |\n`
    for (const [sym, n] of sorted(jsSelf).slice(0, 10)) md += `| \`${sym.replace(/\|/g, '/')}\` | ${pct(n, total)} |\n`
  }
  md += `\n## How to read this\n\n`
  md += `Sampling: \`perf record -e cpu-clock -g\` (software clock: this VM has no hardware counters), stacks unwound through frame pointers. `
  md += `The leaf (self) frame of every sample is exact. Callers above Rust frames are not reliable (the addon is built without frame pointers), so the "JS anywhere on the stack" figure counts JS frames found by the unwinder: JS and V8 frames keep frame pointers, so JS that calls into Rust, or Rust called from a JS callback on the main thread, shows up there; and any JS running shows up as self time regardless. `
  md += `Node runs with \`--perf-basic-prof\` so JIT-compiled functions have names (they would otherwise be anonymous addresses, still counted as JS). `
  md += `Percentages are of all samples of the broker process, i.e. of the CPU time it used while the profile ran.\n`
  return { md, total, jsOnStack, jsLeaf, rustSelf: sorted(rustSelf).slice(0, TOP) }
}

// ---------------------------------------------------------------- cpuprofile

function cpuprofileSummary(prof) {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  // The profile covers the process's whole life; startup (module loading,
  // config) ends when the event loop first goes idle: count from there.
  const firstIdle = prof.samples.findIndex((id) => byId.get(id)?.callFrame.functionName === '(idle)')
  const startupSamples = Math.max(0, firstIdle)
  const counts = new Map()
  for (const id of prof.samples.slice(startupSamples)) count(counts, id)
  const cats = new Map()
  const fnSelf = new Map()
  let total = 0
  for (const [id, n] of counts) {
    const node = byId.get(id)
    const { functionName, url } = node.callFrame
    let cat
    if (functionName === '(idle)') cat = '(idle): JS thread waiting in the event loop'
    else if (functionName === '(program)') cat = '(program): native code on the JS thread, outside JS'
    else if (functionName === '(garbage collector)') cat = '(garbage collector)'
    else if (functionName === '(root)') cat = '(root)'
    else if (url.includes('/packages/fbroker/')) cat = 'JS: fbroker (our TypeScript)'
    else if (!url || url.startsWith('node:')) cat = "JS: node's own"
    else cat = 'JS: other (dependencies)'
    count(cats, cat, n)
    if (cat.startsWith('JS')) count(fnSelf, `${functionName || '(anonymous)'} ${url.replace(/^.*\/(packages|node_modules)\//, '$1/')}:${node.callFrame.lineNumber + 1}`, n)
    total += n
  }
  const js = [...cats].filter(([k]) => k.startsWith('JS')).reduce((a, [, n]) => a + n, 0)
  const busy = total - (cats.get('(idle): JS thread waiting in the event loop') ?? 0)
  let md = header('fbroker fan-in profile (JS thread, V8 CPU profile)')
  md += `## Headline\n\n- **${total.toLocaleString('en-US')}** samples of the JS (main) thread after startup (the ${startupSamples} samples before the event loop first went idle, module loading and configuration, are left out; the load ran after that).\n- **JS functions: ${js} samples = ${pct(js, total)} of all, ${pct(js, busy)} of non-idle samples.**\n`
  md += `- This profiler sees the JS thread only: the Rust engine's threads (fbroker-io) are not sampled; broker CPU in cores above covers all threads.\n\n`
  md += `| category | samples | share |\n| --- | ---: | ---: |\n`
  for (const [k, n] of sorted(cats)) md += `| ${k} | ${n} | ${pct(n, total)} |\n`
  md += `\n## Top JS functions by self samples\n\n`
  if (!fnSelf.size) md += 'None.\n'
  else {
    md += `| function | samples | share |\n| --- | ---: | ---: |\n`
    for (const [k, n] of sorted(fnSelf).slice(0, TOP)) md += `| \`${k}\` | ${n} | ${pct(n, total)} |\n`
  }
  return { md, total, js, busy }
}

// ---------------------------------------------------------------- main

if (opts['perf-script']) {
  const r = perfSummary(fs.readFileSync(opts['perf-script'], 'utf8'), Number(opts.pid))
  process.stdout.write(r.md)
  process.stderr.write(`samples ${r.total}; JS on stack ${pctNum(r.jsOnStack, r.total).toFixed(2)} %; JS self ${pctNum(r.jsLeaf, r.total).toFixed(2)} %\n`)
} else if (opts.cpuprofile) {
  const r = cpuprofileSummary(JSON.parse(fs.readFileSync(opts.cpuprofile, 'utf8')))
  process.stdout.write(r.md)
} else {
  process.stderr.write('usage: node bench/profile-summary.mjs --perf-script FILE --pid PID | --cpuprofile FILE [--meta FILE]\n')
  process.exit(2)
}
