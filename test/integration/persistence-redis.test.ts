// The Redis persistence backend against real redis-server processes: the
// shared contract (single Redis started with scripts/redis.sh, and a
// three-node Redis Cluster), the key layout, queue bounds under concurrent
// writers, expiry and clean-session deletion checked with SCAN, and outages
// (a Redis killed and restarted, a Redis frozen) behind the durable writer.
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { Cluster, Redis } from 'ioredis'
import {
  DurableWriter,
  PersistenceOverflowError,
  RedisPersistence,
  createPersistence,
  keySlot,
  type OpResult,
  type PersistOp,
  type QueueLimits,
  type RedisPersistenceOptions,
} from '../../packages/fbroker/src/persistence'
import { msg, persistenceSuite, session } from '../backends/persistence.abstract'
import mqtt from 'mqtt'
import { freePort } from '../helpers/broker'
import { startCli } from '../helpers/cli-broker'
import { redisScript } from '../helpers/redis'

const haveRedis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).error === undefined
const haveCli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' }).error === undefined
const skip = haveRedis && haveCli ? false : 'redis-server is not installed: apt-get install redis-server (scripts/redis.sh start installs it when run as root)'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-persistence-'))
let port = 0
let started = false

function redisSh(action: 'start' | 'stop', p = port): void {
  redisScript(action, p, dir)
}

before(async () => {
  if (skip) return
  port = await freePort()
  redisSh('start')
  started = true
})

const admins: Array<Redis | Cluster> = []
after(async () => {
  for (const a of admins) a.disconnect()
  if (started) redisSh('stop')
  rmSync(dir, { recursive: true, force: true })
})

function admin(p = port): Redis {
  const client = new Redis({ port: p, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  client.on('error', () => {}) // reconnects quietly through the outage tests
  admins.push(client)
  return client
}

/** Every key matching `pattern`, by SCAN (on every master of a cluster). */
async function scanKeys(redis: Redis | Cluster, pattern: string): Promise<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
  const keys: string[] = []
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, page] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      keys.push(...page)
      cursor = next
    } while (cursor !== '0')
  }
  return keys.sort()
}

/** Bookkeeping keys of the backend, not broker state: the list of groups and the batch markers. */
function isBookkeeping(prefix: string, key: string): boolean {
  return key === `${prefix}groups` || (key.startsWith(`${prefix}g:{`) && /\}:batch:[^:]+$/.test(key))
}

let prefixes = 0
const newPrefix = () => `ptest${++prefixes}-${process.pid}:`

async function deleteKeys(redis: Redis | Cluster, prefix: string): Promise<void> {
  for (const key of await scanKeys(redis, `${prefix}*`)) await redis.del(key)
}

function fixtureFor(redis: () => Redis | Cluster, options: () => RedisPersistenceOptions) {
  return async ({ queue }: { queue?: QueueLimits }) => {
    const prefix = newPrefix()
    const backend = new RedisPersistence({ ...options(), prefix, ...(queue === undefined ? {} : { queue }) })
    await backend.open()
    return {
      backend,
      stateKeys: async () => (await scanKeys(redis(), `${prefix}*`)).filter((k) => !isBookkeeping(prefix, k)),
      messageBodies: async () => {
        let n = 0
        for (const key of await scanKeys(redis(), `${prefix}m:*:bodies`)) n += await redis().hlen(key)
        return n
      },
      close: async () => {
        await backend.close()
        await deleteKeys(redis(), prefix)
      },
    }
  }
}

let shared: Redis | undefined
persistenceSuite(
  'redis',
  fixtureFor(
    () => (shared ??= admin()),
    () => ({ host: '127.0.0.1', port }),
  ),
  { skip },
)

const save = (clientId: string, extra: Parameters<typeof session>[0] = {}): PersistOp => ({ op: 'session.save', clientId, session: session(extra) })

/**
 * `fbroker start --config` with `persistence: redis` and `lines` naming the
 * store: a persistent session's subscription, 200 queued QoS 1 messages and
 * a retained message survive a restart (SIGTERM). Returns the prefix used.
 */
async function cliRestartRoundTrip(label: string, lines: string[]): Promise<string> {
  const prefix = `cli-${label}-${process.pid}:`
  const configFile = path.join(mkdtempSync(path.join(dir, `cli-${label}-`)), 'fbroker.yaml')
  writeFileSync(configFile, ['persistence: redis', `persistence_prefix: "${prefix}"`, 'log_level: info', ...lines, ''].join('\n'))
  const start = async () => {
    const broker = await startCli(['--host', '127.0.0.1', '--port', '0', '--config', configFile])
    return { broker, url: broker.of('tcp')[0]!.url }
  }
  let { broker, url } = await start()
  try {
    const sub = await mqtt.connectAsync(url, { clientId: `${label}-sub`, clean: false, reconnectPeriod: 0 })
    await sub.subscribeAsync('cli/+', { qos: 1 })
    await sub.endAsync()
    const pub = await mqtt.connectAsync(url, { clientId: `${label}-pub`, reconnectPeriod: 0 })
    for (let i = 0; i < 200; i++) await pub.publishAsync('cli/q', String(i), { qos: 1 })
    await pub.publishAsync('cli/r', 'kept', { qos: 1, retain: true })
    await pub.endAsync()
    assert.equal(await broker.stop(), 0)
    ;({ broker, url } = await start())
    const queued: string[] = []
    let done: () => void = () => undefined
    const all = new Promise<void>((resolve) => (done = resolve))
    const back = mqtt.connect(url, { clientId: `${label}-sub`, clean: false, reconnectPeriod: 0 })
    back.on('message', (topic, payload) => {
      if (topic === 'cli/q' && queued.push(payload.toString()) === 200) done()
    })
    const ack = await Promise.race([new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve)), sleep(5000).then(() => undefined)])
    assert.equal(ack?.sessionPresent, true, 'the session was restored')
    await Promise.race([all, sleep(10_000)])
    await sleep(200) // duplicates, if any, would arrive now
    await back.endAsync()
    assert.deepEqual(queued, Array.from({ length: 200 }, (_, i) => String(i)), 'every queued message, in order, once')
    const late = await mqtt.connectAsync(url, { clientId: `${label}-late`, reconnectPeriod: 0 })
    const retained = new Promise<string>((resolve) => late.on('message', (_t, payload, packet) => packet.retain && resolve(payload.toString())))
    await late.subscribeAsync('cli/r', { qos: 1 })
    assert.equal(await Promise.race([retained, sleep(5000).then(() => 'none')]), 'kept', 'the retained message was restored')
    await late.endAsync()
    const clean = await mqtt.connectAsync(url, { clientId: `${label}-sub`, clean: true, reconnectPeriod: 0 })
    await clean.endAsync()
  } finally {
    await broker.stop()
  }
  return prefix
}

describe('redis persistence', { skip }, () => {
  test('the key layout: a prefix, {clientId} hash tags (braces percent-encoded), one slot per client, a lexicographic retained index', async () => {
    const redis = admin()
    const prefix = 'layout:'
    const backend = new RedisPersistence({ url: `redis://127.0.0.1:${port}/3`, prefix })
    await backend.open()
    try {
      const body = msg('t', 'payload')
      const odd = 'we{ir}d%id'
      await backend.apply([
        save('c1'),
        { op: 'sub.add', clientId: 'c1', filter: 'a/#', qos: 1 },
        { op: 'queue.push', clientId: 'c1', message: body },
        { op: 'inflight.set', clientId: 'c1', packetId: 7, stage: 'puback', message: msg('t', 'sent') },
        { op: 'incoming.add', clientId: 'c1', packetId: 8 },
        save(odd, { connected: false, expiresAt: 2_000_000_000_000 }),
        { op: 'retained.set', topic: 'r/1', message: msg('r/1', 'kept') },
      ])
      assert.deepEqual(await scanKeys(redis, '*'), [], 'nothing in db 0: the URL chose db 3')
      await redis.select(3)
      const keys = await scanKeys(redis, `${prefix}*`)
      const markers = keys.filter((k) => /^layout:g:\{all\}:batch:[0-9a-f]{8}$/.test(k))
      assert.equal(markers.length, 1)
      assert.deepEqual(
        keys.filter((k) => !markers.includes(k) && !k.startsWith(`${prefix}m:`)),
        [
          'layout:c:{c1}:in',
          'layout:c:{c1}:inf',
          'layout:c:{c1}:meta',
          'layout:c:{c1}:q',
          'layout:c:{c1}:s',
          'layout:c:{c1}:subs',
          'layout:c:{we%7Bir%7Dd%25id}:s',
          'layout:g:{all}:expiry',
          'layout:g:{all}:sessions',
          'layout:groups',
          'layout:r:{r}:idx',
          'layout:r:{r}:t:r/1',
        ].sort(),
      )
      assert.deepEqual(keys.filter((k) => k.startsWith(`${prefix}m:`)).sort(), ['layout:m:{all}:bodies', 'layout:m:{all}:refs'])
      assert.equal(await redis.hlen('layout:m:{all}:bodies'), 2, 'two message bodies')
      assert.equal(new Set(keys.filter((k) => k.includes('{c1}')).map(keySlot)).size, 1, "one slot for all of c1's keys")
      assert.equal(keySlot('layout:c:{we%7Bir%7Dd%25id}:s'), keySlot('x:{we%7Bir%7Dd%25id}:q'))
      assert.ok(await redis.ttl(markers[0]!) > 0, 'the batch marker expires')
      assert.deepEqual(await redis.hgetall('layout:c:{c1}:subs'), { 'a/#': '1' })
      assert.deepEqual(await redis.lrange('layout:c:{c1}:q', 0, -1), [`1:0:7:${body.id}`])
      assert.deepEqual((await redis.smembers('layout:g:{all}:sessions')).sort(), ['c1', odd].sort())
      assert.deepEqual(await redis.zrange('layout:g:{all}:expiry', '0', '-1', 'WITHSCORES'), [odd, '2000000000000'])
      assert.deepEqual(await redis.zrange('layout:r:{r}:idx', '0', '-1'), ['r/1'])
      assert.equal(await redis.hget('layout:m:{all}:refs', body.id), '1')
      assert.deepEqual((await backend.load()).sessions.map((s) => s.clientId), ['c1', odd])
    } finally {
      await backend.close()
      await deleteKeys(redis, prefix)
      await redis.select(0)
    }
  })

  test('after clean sessions disconnect and retained messages are cleared, SCAN finds only bookkeeping: the group list and expiring batch markers', async () => {
    const redis = admin()
    const prefix = newPrefix()
    const backend = new RedisPersistence({ port, prefix })
    await backend.open()
    try {
      for (let i = 0; i < 50; i++) {
        const c = `clean-${i}`
        await backend.apply([
          save(c, { clean: true, will: { topic: 'lwt', payload: Buffer.from('gone'), qos: 1, retain: false } }),
          { op: 'sub.add', clientId: c, filter: 'x/#', qos: 2 },
          { op: 'inflight.set', clientId: c, packetId: 1, stage: 'pubrec', message: msg('x/y', `d${i}`, 2) },
          { op: 'incoming.add', clientId: c, packetId: 9 },
          { op: 'retained.set', topic: `x/${i}`, message: msg(`x/${i}`, 'r') },
        ])
      }
      assert.ok((await scanKeys(redis, `${prefix}c:*`)).length >= 50 * 5)
      await backend.apply(Array.from({ length: 50 }, (_, i) => ({ op: 'session.delete', clientId: `clean-${i}` }) as PersistOp))
      await backend.apply(Array.from({ length: 50 }, (_, i) => ({ op: 'retained.delete', topic: `x/${i}` }) as PersistOp))
      const left = await scanKeys(redis, `${prefix}*`)
      assert.deepEqual(
        left.filter((k) => !isBookkeeping(prefix, k)),
        [],
      )
      assert.ok(left.includes(`${prefix}groups`))
      for (const k of left.filter((key) => key !== `${prefix}groups`)) assert.ok((await redis.pttl(k)) > 0, `${k} expires`)
    } finally {
      await backend.close()
      await deleteKeys(redis, prefix)
    }
  })

  test('session expiry removes every key of the session, its message bodies and its index entries', async () => {
    const redis = admin()
    const prefix = newPrefix()
    const backend = new RedisPersistence({ port, prefix })
    await backend.open()
    try {
      const now = Date.now()
      const shared = msg('t', 'to both')
      await backend.apply([
        save('due', { connected: false, expiresAt: now - 1, will: { topic: 'w', payload: Buffer.from('w'), qos: 0, retain: false } }),
        { op: 'sub.add', clientId: 'due', filter: 'a', qos: 1 },
        { op: 'queue.push', clientId: 'due', message: shared },
        { op: 'queue.push', clientId: 'due', message: msg('t', 'own') },
        { op: 'inflight.set', clientId: 'due', packetId: 3, stage: 'puback', message: msg('t', 'flying') },
        { op: 'incoming.add', clientId: 'due', packetId: 4 },
        save('stays', { connected: false, expiresAt: now + 60_000 }),
        { op: 'queue.push', clientId: 'stays', message: shared },
      ])
      assert.equal((await scanKeys(redis, `${prefix}c:{due}:*`)).length, 6)
      assert.equal(await redis.hlen(`${prefix}m:{all}:bodies`), 3)
      assert.deepEqual(await backend.expire(now), ['due'])
      assert.deepEqual(await scanKeys(redis, `${prefix}c:{due}:*`), [])
      assert.deepEqual(await redis.hkeys(`${prefix}m:{all}:bodies`), [shared.id], "only the body 'stays' still references")
      assert.deepEqual(await redis.hgetall(`${prefix}m:{all}:refs`), { [shared.id]: '1' })
      assert.equal(await redis.sismember(`${prefix}g:{all}:sessions`, 'due'), 0)
      assert.equal(await redis.zscore(`${prefix}g:{all}:expiry`, 'due'), null)
      assert.equal(await redis.zscore(`${prefix}g:{all}:expiry`, 'stays'), String(now + 60_000))
    } finally {
      await backend.close()
      await deleteKeys(redis, prefix)
    }
  })

  for (const policy of ['drop_new', 'drop_oldest'] as const) {
    test(`the queue bound and ${policy} hold in Redis with concurrent pushers on separate connections`, async () => {
      const redis = admin()
      const prefix = newPrefix()
      const limits: QueueLimits = { maxMessages: 25, maxBytes: 2000, policy }
      const writers = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const b = new RedisPersistence({ port, prefix, queue: limits })
          await b.open()
          return b
        }),
      )
      const clients = ['q-0', 'q-1', 'q-2']
      try {
        await writers[0]!.apply(clients.map((c) => save(c)))
        const pushed = new Map(clients.map((c) => [c, 0]))
        const outcomes: Array<{ clientId: string; result: OpResult }> = []
        // 6 writers × 40 batches × 3 pushes, all under way at once; payload sizes 1–120 bytes.
        await Promise.all(
          writers.map(async (w, wi) => {
            const batches = Array.from({ length: 40 }, (_, bi) =>
              clients.map((clientId, ci) => {
                pushed.set(clientId, pushed.get(clientId)! + 1)
                const op: PersistOp = { op: 'queue.push', clientId, message: msg('t', Buffer.alloc(1 + ((wi * 7 + bi * 13 + ci * 29) % 120), 97 + wi)) }
                return op
              }),
            )
            const results = await Promise.all(batches.map((ops) => w.apply(ops)))
            for (const r of results) r.results.forEach((result, k) => outcomes.push({ clientId: clients[k]!, result }))
          }),
        )
        const snap = await writers[0]!.load()
        let bodies = 0
        for (const c of clients) {
          const queue = snap.sessions.find((s) => s.clientId === c)!.queue
          const mine = outcomes.filter((o) => o.clientId === c)
          const queued = mine.filter((o) => o.result?.kind === 'queued').length
          const evicted = mine.reduce((n, o) => n + (o.result?.kind === 'queued' ? o.result.evicted : 0), 0)
          const bytes = queue.reduce((n, e) => n + e.message.payload.length, 0)
          assert.equal(mine.length, pushed.get(c))
          assert.ok(queue.length <= 25, `${c}: ${queue.length} messages`)
          assert.ok(bytes <= 2000, `${c}: ${bytes} bytes`)
          assert.equal(await redis.hget(`${prefix}c:{${c}}:meta`, 'qb'), String(bytes), 'the byte counter matches the queue')
          assert.equal(queued - evicted, queue.length, 'every stored message is queued or was evicted')
          if (policy === 'drop_new') {
            assert.equal(evicted, 0)
            assert.equal(mine.filter((o) => o.result?.kind === 'dropped' && o.result.reason === 'queue_full').length, mine.length - queued)
          } else {
            assert.equal(queued, mine.length, 'drop_oldest stores every arrival')
            assert.ok(evicted > 0)
          }
          // The queue is full: another message would not fit.
          assert.ok(queue.length === 25 || bytes + 120 > 2000, `${c} is full (${queue.length} messages, ${bytes} bytes)`)
          bodies += queue.length
        }
        assert.equal(await redis.hlen(`${prefix}m:{all}:bodies`), bodies, 'no body outlives its queue entries')
        assert.equal(await redis.hlen(`${prefix}m:{all}:refs`), bodies)
      } finally {
        await Promise.all(writers.map((w) => w.close()))
        await deleteKeys(redis, prefix)
      }
    })
  }

  test('an unreachable Redis: open() gives up after connectTimeoutMs; apply fails at once instead of queueing', async () => {
    const deadPort = await freePort()
    const backend = new RedisPersistence({ port: deadPort, connectTimeoutMs: 300 })
    try {
      const startedAt = performance.now()
      await assert.rejects(backend.open(), /not connected within 300 ms/)
      assert.ok(performance.now() - startedAt < 2000)
      assert.equal(backend.health().connected, false)
      assert.match(backend.health().lastError ?? '', /ECONNREFUSED/)
      await assert.rejects(backend.apply([save('c')]), /writeable|closed|connect/i)
    } finally {
      await backend.close()
    }
  })

  test('createPersistence({ kind: "redis" }) builds the Redis backend; a prefix with braces is refused', async () => {
    const backend = createPersistence({ kind: 'redis', port, prefix: newPrefix() })
    assert.equal(backend.kind, 'redis')
    await backend.close()
    assert.throws(() => new RedisPersistence({ port, prefix: 'bad{tag}:', redisOptions: { lazyConnect: true } }), /prefix must not contain/)
  })
})

// ---------------------------------------------------------------------------------
// Outages, behind the durable writer.

/** A redis-server child process on a loopback port (for what scripts/redis.sh does not offer: an append-only file, cluster mode, signals). */
class RedisProcess {
  readonly port: number
  readonly dir: string
  readonly args: string[]
  #child: ChildProcess | undefined

  constructor(p: number, d: string, args: string[]) {
    this.port = p
    this.dir = d
    this.args = args
  }

  async start(): Promise<void> {
    const sentinel = this.args[0] === '--sentinel'
    const args = sentinel
      ? [path.join(this.dir, 'sentinel.conf'), '--sentinel', '--bind', '127.0.0.1', '--port', String(this.port)]
      : ['--bind', '127.0.0.1', '--port', String(this.port), '--dir', this.dir, '--save', '', ...this.args]
    this.#child = spawn('redis-server', args, { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      if (spawnSync('redis-cli', ['-p', String(this.port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return
      await sleep(50)
    }
    throw new Error(`redis-server on ${this.port} did not start`)
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.#child?.kill(signal)
  }

  async stop(): Promise<void> {
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }
}

/** A Redis whose every acknowledged write is on disk: a SIGKILL loses nothing acknowledged (scripts/redis.sh runs without persistence). */
async function durableRedis(name: string): Promise<RedisProcess> {
  const server = new RedisProcess(await freePort(), mkdtempSync(path.join(dir, `${name}-`)), ['--appendonly', 'yes', '--appendfsync', 'always'])
  await server.start()
  return server
}

describe('redis persistence outages, through the durable writer', { skip }, () => {
  test('Redis killed (SIGKILL) mid-stream and restarted: the writer buffers, retries, refuses past its bound, and every acknowledged op is in Redis afterwards', async () => {
    const server = await durableRedis('aof')
    const backend = new RedisPersistence({ port: server.port, prefix: 'outage:', commandTimeoutMs: 500, queue: { maxMessages: 0 } })
    await backend.open()
    const writer = new DurableWriter(backend, { maxBufferedOps: 400, retryInitialMs: 20, retryMaxMs: 200, retryJitter: 0 })
    const events: string[] = []
    writer.on('degraded', () => events.push('degraded'))
    writer.on('recovered', () => events.push('recovered'))
    writer.on('overflow', () => events.push('overflow'))
    try {
      await writer.submit([save('sub-1', { connected: false, expiresAt: Date.now() + 3_600_000 }), save('sub-2')])
      const acked: string[] = []
      const refused: string[] = []
      const pending: Promise<void>[] = []
      let n = 0
      let stop = false
      // One batch of 4 pushes (2 per session) every 3 ms, like a publisher fanning out.
      const stream = (async () => {
        while (!stop) {
          const payloads = [`p${n}`, `p${n + 1}`]
          n += 2
          const ops: PersistOp[] = payloads.flatMap((p) => {
            const m = msg('feed', p)
            return [
              { op: 'queue.push', clientId: 'sub-1', message: m },
              { op: 'queue.push', clientId: 'sub-2', message: m },
            ] as PersistOp[]
          })
          pending.push(
            writer.submit(ops).then(
              () => void acked.push(...payloads),
              (err: unknown) => {
                assert.ok(err instanceof PersistenceOverflowError, String(err))
                refused.push(...payloads)
              },
            ),
          )
          await sleep(3)
        }
      })()

      await sleep(300)
      const before = acked.length
      assert.ok(before > 20, `acknowledged before the crash: ${before}`)
      server.kill('SIGKILL')
      await sleep(1000)
      assert.equal(writer.health().state, 'degraded')
      assert.ok(writer.health().bufferedOps > 0)
      assert.equal(backend.health().connected, false)
      const duringOutage = acked.length
      assert.ok(duringOutage - before <= 40, `at most what was in flight at the crash is acknowledged during the outage (${duringOutage - before})`)
      assert.ok(refused.length > 0, 'past the bound, batches are refused')
      assert.ok(writer.health().bufferedOps <= 400)

      await server.start() // replays its append-only file
      const deadline = performance.now() + 10_000
      while (writer.health().state !== 'ok' && performance.now() < deadline) await sleep(50)
      assert.equal(writer.health().state, 'ok', 'recovered')
      await sleep(200)
      stop = true
      await stream
      await Promise.all(pending)
      await writer.flush()
      assert.deepEqual(events.slice(0, 3), ['degraded', 'overflow', 'recovered'])
      assert.ok(acked.length > duringOutage, 'buffered batches were acknowledged once stored')

      // What a restarted broker would load: a fresh connection, as after a kill -9 of the broker.
      const fresh = new RedisPersistence({ port: server.port, prefix: 'outage:' })
      await fresh.open()
      try {
        const snap = await fresh.load()
        for (const s of snap.sessions) {
          const stored = s.queue.map((e) => e.message.payload.toString())
          const storedSet = new Set(stored)
          const lost = acked.filter((p) => !storedSet.has(p))
          assert.deepEqual(lost, [], `${s.clientId}: acknowledged but not stored`)
          assert.equal(stored.length, storedSet.size, `${s.clientId}: no message stored twice`)
          assert.ok(!refused.some((p) => storedSet.has(p)), `${s.clientId}: nothing refused was stored`)
          const order = stored.map((p) => Number(p.slice(1)))
          assert.deepEqual(order, [...order].sort((a, b) => a - b), `${s.clientId}: in submission order`)
        }
        assert.equal(snap.sessions.length, 2)
      } finally {
        await fresh.close()
      }
    } finally {
      await writer.close({ timeoutMs: 1000 })
      await backend.close()
      await server.stop()
    }
  })

  test('Redis frozen (SIGSTOP) past the command timeout: retries pile up behind the stalled batch, and after SIGCONT each batch is applied exactly once', async () => {
    const server = await durableRedis('frozen')
    const backend = new RedisPersistence({ port: server.port, prefix: 'frozen:', commandTimeoutMs: 100, queue: { maxMessages: 0 } })
    await backend.open()
    const writer = new DurableWriter(backend, { retryInitialMs: 20, retryMaxMs: 100, retryJitter: 0 })
    try {
      await writer.submit([save('s')])
      const results: Promise<OpResult[]>[] = []
      for (let i = 0; i < 5; i++) results.push(writer.submit([{ op: 'queue.push', clientId: 's', message: msg('t', `before-${i}`) }]))
      server.kill('SIGSTOP')
      for (let i = 0; i < 20; i++) {
        results.push(writer.submit([{ op: 'queue.push', clientId: 's', message: msg('t', `frozen-${i}`) }]))
        await sleep(10)
      }
      await sleep(600)
      assert.equal(writer.health().state, 'degraded')
      assert.ok(writer.health().failedAttempts >= 2, `${writer.health().failedAttempts} failed attempts`)
      server.kill('SIGCONT')
      const settled = await Promise.all(results)
      assert.ok(settled.every((r) => r[0]?.kind === 'queued'))
      await writer.flush()
      const queue = (await backend.load()).sessions[0]!.queue.map((e) => e.message.payload.toString())
      assert.deepEqual(queue, [...Array.from({ length: 5 }, (_, i) => `before-${i}`), ...Array.from({ length: 20 }, (_, i) => `frozen-${i}`)])
    } finally {
      server.kill('SIGCONT')
      await writer.close({ timeoutMs: 1000 })
      await backend.close()
      await server.stop()
    }
  })
})

// ---------------------------------------------------------------------------------
// Sentinel: a master, a replica and one sentinel started here.

describe('redis persistence through Sentinel', { skip }, () => {
  const procs: RedisProcess[] = []
  after(() => Promise.all(procs.map((p) => p.stop())))

  test('connects through Sentinel, acknowledges only what the replica has (waitForReplicas), and rides through a failover losing nothing acknowledged', async () => {
    // No 5 s wait before a full resync: the demoted master rejoins at once.
    const quick = ['--appendonly', 'no', '--repl-diskless-sync-delay', '0']
    const master = new RedisProcess(await freePort(), mkdtempSync(path.join(dir, 'master-')), quick)
    await master.start()
    procs.push(master)
    const replica = new RedisProcess(await freePort(), mkdtempSync(path.join(dir, 'replica-')), [...quick, '--replicaof', '127.0.0.1', String(master.port)])
    await replica.start()
    procs.push(replica)
    const sentinelDir = mkdtempSync(path.join(dir, 'sentinel-'))
    writeFileSync(
      path.join(sentinelDir, 'sentinel.conf'),
      [`dir ${sentinelDir}`, `sentinel monitor fbmaster 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds fbmaster 1000', 'sentinel failover-timeout fbmaster 5000', ''].join('\n'),
    )
    const sentinel = new RedisProcess(await freePort(), sentinelDir, ['--sentinel'])
    await sentinel.start()
    procs.push(sentinel)
    const replicaAdmin = admin(replica.port)
    for (let i = 0; i < 100 && !/master_link_status:up/.test(await replicaAdmin.info('replication')); i++) await sleep(50)

    const backend = new RedisPersistence({
      sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
      sentinelName: 'fbmaster',
      prefix: 'sentinel:',
      waitForReplicas: { replicas: 1, timeoutMs: 1000 },
      commandTimeoutMs: 2000,
      queue: { maxMessages: 0 },
    })
    await backend.open()
    const writer = new DurableWriter(backend, { retryInitialMs: 20, retryMaxMs: 200, retryJitter: 0 })
    try {
      await writer.submit([save('s1')])
      const m = msg('t', 'replicated')
      await writer.submit([{ op: 'queue.push', clientId: 's1', message: m }])
      // WAIT made the acknowledgement wait for the replica: it has the write already.
      assert.deepEqual(await replicaAdmin.lrange('sentinel:c:{s1}:q', 0, -1), [`1:0:10:${m.id}`])

      const acked: string[] = []
      let stop = false
      const stream = (async () => {
        for (let i = 0; !stop; i++) {
          const payload = `f${i}`
          await writer.submit([{ op: 'queue.push', clientId: 's1', message: msg('t', payload) }]).then(() => acked.push(payload))
          await sleep(5)
        }
      })()
      await sleep(200)
      const sentinelAdmin = admin(sentinel.port)
      assert.equal(await sentinelAdmin.call('SENTINEL', 'FAILOVER', 'fbmaster'), 'OK')
      const deadline = performance.now() + 15_000
      while (performance.now() < deadline && !/role:master/.test(await replicaAdmin.info('replication'))) await sleep(100)
      assert.match(await replicaAdmin.info('replication'), /role:master/, 'the replica was promoted')
      const atFailover = acked.length
      // Keep writing until batches flow to the new master (ioredis asks Sentinel again).
      while (performance.now() < deadline && acked.length < atFailover + 20) await sleep(50)
      stop = true
      await stream
      await writer.flush()
      assert.ok(acked.length >= atFailover + 20, `writes continue after the failover (${atFailover} → ${acked.length})`)
      const stored = (await replicaAdmin.lrange('sentinel:c:{s1}:q', 0, -1)).length
      const snapshot = (await backend.load()).sessions[0]!.queue.map((e) => e.message.payload.toString())
      assert.equal(snapshot.length, stored, 'the backend now reads the promoted replica')
      const have = new Set(snapshot)
      assert.deepEqual(acked.filter((p) => !have.has(p)), [], 'nothing acknowledged was lost in the failover')
      assert.equal(have.size, snapshot.length, 'nothing stored twice')
    } finally {
      await writer.close({ timeoutMs: 2000 })
      await backend.close()
    }
  })

  test('fbroker start with redis_sentinels in its config file finds the master through Sentinel and keeps a session, its queue and a retained message across a restart', async () => {
    const master = new RedisProcess(await freePort(), mkdtempSync(path.join(dir, 'cli-master-')), ['--appendonly', 'no'])
    await master.start()
    procs.push(master)
    const sentinelDir = mkdtempSync(path.join(dir, 'cli-sentinel-'))
    writeFileSync(path.join(sentinelDir, 'sentinel.conf'), [`dir ${sentinelDir}`, `sentinel monitor climaster 127.0.0.1 ${master.port} 1`, ''].join('\n'))
    const sentinel = new RedisProcess(await freePort(), sentinelDir, ['--sentinel'])
    await sentinel.start()
    procs.push(sentinel)
    const prefix = await cliRestartRoundTrip('sentinel', [`redis_sentinels: ["127.0.0.1:${sentinel.port}"]`, 'redis_sentinel_name: climaster'])
    assert.ok((await scanKeys(admin(master.port), `${prefix}*`)).length > 0, 'the broker wrote to the master the sentinel named')
  })
})

// ---------------------------------------------------------------------------------
// Redis Cluster: three masters started here (no replicas).

const clusterPorts: number[] = []
const clusterNodes: RedisProcess[] = []
let clusterAdmin: Cluster | undefined

describe('redis persistence on a Redis Cluster', { skip }, () => {
  after(async () => {
    clusterAdmin?.disconnect()
    await Promise.all(clusterNodes.map((n) => n.stop()))
  })
  before(async () => {
    for (let i = 0; i < 3; i++) {
      const p = await freePort()
      const node = new RedisProcess(p, mkdtempSync(path.join(dir, `cluster-${p}-`)), ['--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'])
      await node.start()
      clusterNodes.push(node)
      clusterPorts.push(p)
    }
    const r = spawnSync('redis-cli', ['--cluster', 'create', ...clusterPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    assert.equal(r.status, 0, `redis-cli --cluster create failed: ${r.stdout} ${r.stderr}`)
    for (let i = 0; i < 200; i++) {
      const ok = clusterPorts.every((p) => /cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout))
      if (ok) break
      await sleep(50)
    }
    clusterAdmin = new Cluster([{ host: '127.0.0.1', port: clusterPorts[0]! }])
    clusterAdmin.on('error', () => {})
    await clusterAdmin.ping()
  })

  persistenceSuite(
    'redis cluster',
    fixtureFor(
      () => clusterAdmin!,
      () => ({ cluster: { nodes: [{ host: '127.0.0.1', port: clusterPorts[0]! }] } }),
    ),
    {
      // Bodies are shared within a hash slot: one copy per distinct slot.
      bodiesFor: (clientIds) => new Set(clientIds.map((c) => keySlot(`{${c}}`))).size,
    },
  )

  test('fbroker start with redis_cluster_nodes in its config file keeps a session, its queue and a retained message in the Cluster across a restart', async () => {
    const prefix = await cliRestartRoundTrip('cluster', [`redis_cluster_nodes: ["127.0.0.1:${clusterPorts[1]!}"]`])
    const perNode = await Promise.all(clusterAdmin!.nodes('master').map(async (n) => (await scanKeys(n, `${prefix}*`)).length))
    assert.ok(perNode.some((count) => count > 0), `the broker wrote to the Cluster: ${perNode.join(', ')}`)
    await deleteKeys(clusterAdmin!, prefix)
  })

  test('a client, its message bodies and its group indexes share one hash slot; groups spread over the nodes', async () => {
    const prefix = newPrefix()
    const backend = new RedisPersistence({ cluster: { nodes: [{ host: '127.0.0.1', port: clusterPorts[0]! }] }, prefix })
    await backend.open()
    try {
      const clients = Array.from({ length: 30 }, (_, i) => `node-spread-${i}`)
      await backend.apply(clients.flatMap((c) => [save(c), { op: 'queue.push', clientId: c, message: msg('t', c) }] as PersistOp[]))
      for (const c of clients) {
        const slot = keySlot(`{${c}}`)
        const own = (await scanKeys(clusterAdmin!, `${prefix}*`)).filter((k) => keySlot(k) === slot)
        assert.ok(own.some((k) => k.startsWith(`${prefix}c:{${c}}:`)))
        assert.ok(own.some((k) => k.startsWith(`${prefix}m:{`)), `${c}: its body is in its slot`)
        assert.ok(own.some((k) => k.endsWith(':sessions')), `${c}: its group index is in its slot`)
      }
      const perNode = await Promise.all(clusterAdmin!.nodes('master').map(async (n) => (await scanKeys(n, `${prefix}c:*`)).length))
      assert.ok(perNode.filter((count) => count > 0).length >= 2, `client keys on several nodes: ${perNode.join(', ')}`)
      assert.equal((await backend.load()).sessions.length, 30)
    } finally {
      await backend.close()
      await deleteKeys(clusterAdmin!, prefix)
    }
  })
})
