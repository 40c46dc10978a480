/**
 * The Redis backend (ioredis): single Redis, Sentinel or Cluster. Key layout
 * in ./keys.ts, scripts in ./lua.ts, guarantees and operation in
 * docs/persistence.md.
 */
import { randomUUID } from 'node:crypto'
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import { topicMatches } from '../auth/acl'
import { KeyLayout } from './keys'
import { APPLY_GROUP, APPLY_RETAINED, EXPIRE_GROUP } from './lua'
import { resolveQueueLimits, type QueueLimits } from './memory'
import { compareBytes, literalPrefix, stageQoS, topicFilterProblem, validateOps } from './ops'
import type {
  ApplyOptions,
  ApplyResult,
  BackendHealth,
  InflightEntry,
  InflightStage,
  OpResult,
  PersistOp,
  PersistenceBackend,
  PersistenceLogger,
  QoS,
  QueueEntry,
  RestoredSession,
  SessionRecord,
  Snapshot,
  StoredMessage,
} from './types'

export const DEFAULT_REDIS_PREFIX = 'fbroker:'
export const DEFAULT_COMMAND_TIMEOUT_MS = 5000
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
export const DEFAULT_BATCH_MARKER_TTL_MS = 24 * 3600 * 1000
export const DEFAULT_PAGE_SIZE = 500

export interface RedisPersistenceOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://` (TLS). For a single Redis. */
  url?: string
  /** Used without `url`. Default 127.0.0.1. */
  host?: string
  /** Used without `url`. Default 6379. */
  port?: number
  password?: string
  /** Database number (single Redis and Sentinel; a Cluster only has 0). Overrides the URL's. */
  db?: number
  /** Sentinel: the sentinels to ask for the master named `sentinelName`. */
  sentinels?: Array<{ host: string; port: number }>
  /** Sentinel: the master's name. Default `mymaster`. */
  sentinelName?: string
  /** Redis Cluster: seed nodes, and ioredis Cluster options merged over ours. */
  cluster?: { nodes: ClusterNode[]; options?: ClusterOptions }
  /** ioredis options merged over ours (single Redis and Sentinel; for a Cluster, per node). */
  redisOptions?: RedisOptions
  /** An existing ioredis client (Redis or Cluster) to use; `close()` leaves it open. */
  redis?: Redis | Cluster
  /** Key prefix; must not contain `{` or `}`. Default `fbroker:`. */
  prefix?: string
  /** Bounds of every session queue, applied atomically in Redis. */
  queue?: QueueLimits
  /**
   * One group per hash slot (required on a Cluster, where keys of different
   * slots cannot be updated atomically) or one group for everything (message
   * bodies shared by all sessions). Default: true for a Cluster client.
   * The key layout differs, so keep it fixed for a keyspace.
   */
  slotGroups?: boolean
  /** Milliseconds a command may take before it fails (and the batch is retried). Default 5000. */
  commandTimeoutMs?: number
  /** Milliseconds `open()` waits for Redis. Default 10000. */
  connectTimeoutMs?: number
  /**
   * Single Redis and Sentinel: acknowledge a batch only once this many
   * replicas have it too (Redis `WAIT` after the batch's scripts); fewer in
   * `timeoutMs` fails the apply, which the durable writer retries. Without
   * it a failover can lose the last acknowledged writes (replication is
   * asynchronous). Not supported on a Cluster.
   */
  waitForReplicas?: { replicas: number; timeoutMs: number }
  /** How long a batch marker (retry protection) is kept. Default 24 h. */
  batchMarkerTtlMs?: number
  /** Entries per page when loading, matching and expiring. Default 500. */
  pageSize?: number
  logger?: PersistenceLogger
}

interface ScriptCommands {
  fbrokerPersistApplyGroup(...args: Array<string | Buffer | number>): Promise<[number, string]>
  fbrokerPersistExpireGroup(...args: Array<string | number>): Promise<[number, string[]]>
  fbrokerPersistApplyRetained(...args: Array<string | Buffer | number>): Promise<number>
}

type Client = (Redis | Cluster) & ScriptCommands

/** Ops of one group within a batch, encoded for APPLY_GROUP (see its header format in ./lua.ts). */
interface GroupBatch {
  tag: string
  /** Flat: client id, key base, client id, key base, … */
  clients: string[]
  clientIndex: Map<string, number>
  messageIds: string[]
  messageIndex: Map<string, number>
  /** Per message its body (`bodyData`). */
  blobs: Buffer[]
  wills: Buffer[]
  ops: unknown[][]
  /** Index in the batch of each op of `ops`. */
  positions: number[]
  hasSave: boolean
}

const STAGE_CODE: Record<InflightStage, string> = { puback: 'a', pubrec: 'r', pubcomp: 'c' }
const CODE_STAGE: Record<string, InflightStage> = { a: 'puback', r: 'pubrec', c: 'pubcomp' }
const QUEUE_ENTRY = /^(\d):(\d):(\d+):(.*)$/s
const INFLIGHT_ENTRY = /^(\d+):([arc]):(\d):(.*)$/s

function checkCount(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer of at least ${min}, got ${String(value)}`)
  }
  return value
}

function parseResult(code: string): OpResult {
  if (code === '') return null
  if (code.startsWith('q:')) return { kind: 'queued', evicted: Number(code.slice(2)) }
  if (code.startsWith('r:')) return { kind: 'removed', count: Number(code.slice(2)) }
  if (code === 'd:full') return { kind: 'dropped', reason: 'queue_full' }
  if (code === 'd:big') return { kind: 'dropped', reason: 'too_large' }
  if (code === 'd:nosession') return { kind: 'dropped', reason: 'no_session' }
  throw new Error(`persistence: unexpected script result ${JSON.stringify(code)}`)
}

function text(b: Buffer | undefined): string {
  return b === undefined ? '' : b.toString('utf8')
}

function toMessage(id: string, topic: string, h: Record<string, Buffer>, retain: boolean): StoredMessage {
  const m: StoredMessage = { id, topic, payload: h.p ?? Buffer.alloc(0), qos: Number(text(h.q)) as QoS, retain }
  const pub = text(h.pub)
  if (pub !== '') m.publisher = pub
  const ts = text(h.ts)
  if (ts !== '') m.timestamp = Number(ts)
  return m
}

/**
 * A message body as stored in the group's body hash: `qos:retain:timestamp:
 * publisher bytes:topic bytes:`, then the publisher, the topic and the
 * payload. One value per message lets the apply script store a batch's new
 * bodies with one HSET.
 */
export function bodyData(m: StoredMessage): Buffer {
  const pub = m.publisher ?? ''
  const pubBytes = Buffer.byteLength(pub)
  const head = `${m.qos}:${m.retain ? 1 : 0}:${m.timestamp ?? ''}:${pubBytes}:${Buffer.byteLength(m.topic)}:${pub}${m.topic}`
  const headBytes = Buffer.byteLength(head)
  const out = Buffer.allocUnsafe(headBytes + m.payload.length)
  out.write(head, 0, 'utf8')
  m.payload.copy(out, headBytes)
  return out
}

const BODY_HEAD = /^(\d):(\d):([^:]*):(\d+):(\d+):/

/** The message of a stored body, or undefined when it is malformed. */
export function bodyMessage(id: string, data: Buffer): StoredMessage | undefined {
  // The numeric head is ASCII and short: read it as latin1 to find where the strings start.
  const head = BODY_HEAD.exec(data.toString('latin1', 0, Math.min(data.length, 80)))
  if (head === null) return undefined
  const pubStart = head[0].length
  const topicStart = pubStart + Number(head[4])
  const payloadStart = topicStart + Number(head[5])
  if (payloadStart > data.length) return undefined
  const m: StoredMessage = {
    id,
    topic: data.toString('utf8', topicStart, payloadStart),
    payload: Buffer.from(data.subarray(payloadStart)),
    qos: Number(head[1]) as QoS,
    retain: head[2] === '1',
  }
  if (topicStart > pubStart) m.publisher = data.toString('utf8', pubStart, topicStart)
  if (head[3] !== '') m.timestamp = Number(head[3])
  return m
}

function toSession(h: Record<string, Buffer>): SessionRecord {
  const exp = text(h.exp)
  return {
    clean: text(h.clean) === '1',
    connected: text(h.conn) === '1',
    expiresAt: exp === '' ? null : Number(exp),
    lastSeen: Number(text(h.seen)),
    node: text(h.node),
    epoch: Number(text(h.epoch)),
    will:
      h.wt === undefined
        ? null
        : { topic: text(h.wt), payload: h.wp ?? Buffer.alloc(0), qos: Number(text(h.wq)) as QoS, retain: text(h.wr) === '1' },
  }
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** The Redis backend. */
export class RedisPersistence implements PersistenceBackend {
  readonly kind = 'redis'
  /** The ioredis client (Redis or Cluster). */
  readonly redis: Redis | Cluster
  readonly layout: KeyLayout
  readonly #client: Client
  readonly #owned: boolean
  readonly #limits: Required<QueueLimits>
  readonly #writer = randomUUID().slice(0, 8)
  readonly #markerTtl: number
  readonly #page: number
  readonly #commandTimeout: number
  readonly #connectTimeout: number
  readonly #logger: PersistenceLogger | undefined
  readonly #waitFor: { replicas: number; timeoutMs: number } | undefined
  /** Group tags known to be in the `groups` set (forgotten on every reconnect: the data may be gone). */
  readonly #registered = new Set<string>()
  #lastError: string | undefined
  #lastErrorAt: number | undefined
  #closed: Promise<void> | undefined
  readonly #onError = (err: Error) => {
    this.#lastError = err.message
    this.#lastErrorAt = Date.now()
  }
  readonly #onReady = () => this.#registered.clear()

  constructor(options: RedisPersistenceOptions = {}) {
    this.#limits = resolveQueueLimits(options.queue)
    this.#commandTimeout = checkCount('commandTimeoutMs', options.commandTimeoutMs, DEFAULT_COMMAND_TIMEOUT_MS, 1)
    this.#connectTimeout = checkCount('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1)
    this.#markerTtl = checkCount('batchMarkerTtlMs', options.batchMarkerTtlMs, DEFAULT_BATCH_MARKER_TTL_MS, 1000)
    this.#page = checkCount('pageSize', options.pageSize, DEFAULT_PAGE_SIZE, 1)
    this.#logger = options.logger

    this.#owned = options.redis === undefined
    const redis = options.redis ?? this.#createClient(options)
    const isCluster = (redis as { isCluster?: boolean }).isCluster === true
    this.redis = redis
    this.layout = new KeyLayout(options.prefix ?? DEFAULT_REDIS_PREFIX, options.slotGroups ?? isCluster)
    if (options.waitForReplicas !== undefined) {
      if (isCluster) throw new RangeError('waitForReplicas is not supported on a Redis Cluster')
      this.#waitFor = {
        replicas: checkCount('waitForReplicas.replicas', options.waitForReplicas.replicas, 1, 1),
        timeoutMs: checkCount('waitForReplicas.timeoutMs', options.waitForReplicas.timeoutMs, 1000, 1),
      }
    }
    redis.defineCommand('fbrokerPersistApplyGroup', { lua: APPLY_GROUP, numberOfKeys: 5 })
    redis.defineCommand('fbrokerPersistExpireGroup', { lua: EXPIRE_GROUP, numberOfKeys: 4 })
    redis.defineCommand('fbrokerPersistApplyRetained', { lua: APPLY_RETAINED, numberOfKeys: 1 })
    this.#client = redis as Client
    redis.on('error', this.#onError)
    redis.on('ready', this.#onReady)
  }

  #createClient(options: RedisPersistenceOptions): Redis | Cluster {
    // Loaded lazily: brokers with memory persistence never load ioredis.
    const { Redis: RedisClass, Cluster: ClusterClass } = require('ioredis') as typeof import('ioredis')
    const common: RedisOptions = {
      lazyConnect: true,
      // Fail at once while disconnected: the durable writer buffers and retries, and must know.
      enableOfflineQueue: false,
      // Never resend by itself: a retry is the writer's, with the same batch id.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.#commandTimeout,
      connectTimeout: this.#connectTimeout,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      // After a failover the old master answers READONLY: reconnect to find the new one.
      reconnectOnError: (err) => err.message.startsWith('READONLY'),
    }
    if (options.password !== undefined) common.password = options.password
    if (options.cluster !== undefined) {
      return new ClusterClass(options.cluster.nodes, {
        lazyConnect: true,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
        ...options.cluster.options,
        // Node connections keep their offline queue: the cluster sends CLUSTER SLOTS through them while they connect.
        redisOptions: { ...common, enableOfflineQueue: true, ...options.redisOptions, ...options.cluster.options?.redisOptions },
      })
    }
    const redisOptions: RedisOptions = { ...common, enableAutoPipelining: true }
    if (options.db !== undefined) redisOptions.db = options.db
    if (options.sentinels !== undefined) {
      redisOptions.sentinels = options.sentinels
      redisOptions.name = options.sentinelName ?? 'mymaster'
    }
    Object.assign(redisOptions, options.redisOptions)
    if (options.url !== undefined) return new RedisClass(options.url, redisOptions)
    if (options.sentinels === undefined) {
      redisOptions.host ??= options.host ?? '127.0.0.1'
      redisOptions.port ??= options.port ?? 6379
    }
    return new RedisClass(redisOptions)
  }

  health(): BackendHealth {
    const h: BackendHealth = { connected: this.redis.status === 'ready', status: this.redis.status }
    if (this.#lastError !== undefined) {
      h.lastError = this.#lastError
      h.lastErrorAt = this.#lastErrorAt!
    }
    return h
  }

  async open(): Promise<void> {
    if (this.#closed !== undefined) throw new Error('redis persistence: closed')
    const redis = this.redis
    if (redis.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          redis.off('ready', onReady)
          reject(new Error(`redis persistence: not connected within ${this.#connectTimeout} ms${this.#lastError ? ` (${this.#lastError})` : ''}`))
        }, this.#connectTimeout)
        const onReady = () => {
          clearTimeout(timer)
          resolve()
        }
        redis.once('ready', onReady)
        if (redis.status === 'wait') redis.connect().catch(() => {}) // errors arrive as 'error' events; we wait for 'ready'
      })
    }
    await this.#checkEvictionPolicy()
  }

  /** Warns when Redis may evict keys: that would silently lose acknowledged state. */
  async #checkEvictionPolicy(): Promise<void> {
    const nodes = (this.redis as { isCluster?: boolean }).isCluster ? (this.redis as Cluster).nodes('master') : [this.redis as Redis]
    for (const node of nodes) {
      try {
        const reply = (await node.config('GET', 'maxmemory-policy')) as unknown as string[]
        const policy = reply[1]
        if (policy !== undefined && policy !== 'noeviction') {
          this.#logger?.warn(
            { maxmemoryPolicy: policy },
            `Redis maxmemory-policy is ${policy}: Redis may evict broker state under memory pressure. Set it to noeviction`,
          )
        }
      } catch {
        // CONFIG may be disabled (managed Redis); nothing to check then.
      }
    }
  }

  async close(): Promise<void> {
    this.#closed ??= (async () => {
      const redis = this.redis
      redis.off('ready', this.#onReady)
      if (!this.#owned) {
        redis.off('error', this.#onError)
        return
      }
      if (redis.status === 'end') return
      const ended = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          redis.disconnect()
          resolve()
        }, this.#commandTimeout)
        redis.once('end', () => {
          clearTimeout(timer)
          resolve()
        })
      })
      if (redis.status === 'ready') redis.quit().catch(() => redis.disconnect())
      else redis.disconnect()
      await ended
      // The error listener stays: a late socket error must not become an unhandled 'error' event.
    })()
    return this.#closed
  }

  #check(): void {
    if (this.#closed !== undefined) throw new Error('redis persistence: closed')
  }

  async apply(ops: readonly PersistOp[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.#check()
    validateOps(ops)
    const token = options.batchId ?? randomUUID()
    const results: OpResult[] = new Array<OpResult>(ops.length).fill(null)
    const layout = this.layout
    const groups = new Map<string, GroupBatch>()
    const retained: object[] = []
    const retainedPayloads: Buffer[] = []

    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!
      if (op.op === 'retained.set' || op.op === 'retained.delete') {
        if (op.op === 'retained.delete') retained.push({ k: 'd', t: op.topic })
        else {
          const m = op.message
          retainedPayloads.push(m.payload)
          retained.push({
            k: 's',
            t: op.topic,
            i: m.id,
            q: m.qos,
            u: m.publisher ?? '',
            s: m.timestamp === undefined ? '' : String(m.timestamp),
            p: 2 + retainedPayloads.length,
          })
        }
        continue
      }
      const tag = layout.groupOf(op.clientId)
      let g = groups.get(tag)
      if (g === undefined) {
        g = { tag, clients: [], clientIndex: new Map(), messageIds: [], messageIndex: new Map(), blobs: [], wills: [], ops: [], positions: [], hasSave: false }
        groups.set(tag, g)
      }
      let c = g.clientIndex.get(op.clientId)
      if (c === undefined) {
        g.clients.push(op.clientId, layout.clientBase(op.clientId))
        g.clientIndex.set(op.clientId, (c = g.clients.length / 2))
      }
      const group = g
      const message = (m: StoredMessage): number => {
        let index = group.messageIndex.get(m.id)
        if (index === undefined) {
          group.messageIds.push(m.id)
          group.blobs.push(bodyData(m))
          group.messageIndex.set(m.id, (index = group.messageIds.length))
        }
        return index
      }
      let encoded: unknown[]
      switch (op.op) {
        case 'session.save': {
          const s = op.session
          encoded = ['ss', c, s.clean ? 1 : 0, s.connected ? 1 : 0, s.expiresAt === null ? '' : String(s.expiresAt), String(s.lastSeen), s.node, String(s.epoch)]
          if (s.will !== null) {
            g.wills.push(s.will.payload)
            encoded.push(s.will.topic, s.will.qos, s.will.retain ? 1 : 0, g.wills.length)
          }
          g.hasSave = true
          break
        }
        case 'session.delete':
          encoded = ['sd', c]
          break
        case 'sub.add':
          encoded = ['sa', c, op.filter, op.qos]
          break
        case 'sub.remove':
          encoded = ['sr', c, op.filter]
          break
        case 'queue.push':
          encoded = ['qp', c, message(op.message), op.qos ?? op.message.qos, op.retain ? 1 : 0, op.message.payload.length]
          break
        case 'queue.remove':
          encoded = ['qr', c, op.count]
          break
        case 'inflight.set':
          encoded = [
            'is',
            c,
            op.packetId,
            STAGE_CODE[op.stage],
            op.message !== undefined && op.stage !== 'pubcomp' ? message(op.message) : 0,
            op.retain === undefined ? -1 : op.retain ? 1 : 0,
          ]
          break
        case 'inflight.clear':
          encoded = ['ic', c, op.packetId]
          break
        case 'incoming.add':
          encoded = ['na', c, op.packetId]
          break
        case 'incoming.remove':
          encoded = ['nr', c, op.packetId]
          break
      }
      g.ops.push(encoded)
      g.positions.push(i)
    }

    const client = this.#client
    const calls: Promise<unknown>[] = []
    const unregistered = [...groups.values()].filter((g) => g.hasSave && !this.#registered.has(g.tag)).map((g) => g.tag)
    if (unregistered.length > 0) {
      const registering = client.sadd(layout.groups, ...unregistered).then(() => {
        for (const tag of unregistered) this.#registered.add(tag)
      })
      // A group must be listed before its first session exists. One connection
      // keeps the order; a Cluster may run them on different nodes, so wait.
      if (layout.slotGroups) await registering
      else calls.push(registering)
    }
    const { maxMessages, maxBytes, policy } = this.#limits
    for (const g of groups.values()) {
      const header = JSON.stringify([maxMessages, maxBytes, policy === 'drop_new' ? 1 : 0, g.clients, g.messageIds, g.ops])
      calls.push(
        client
          .fbrokerPersistApplyGroup(
            layout.groupBatch(g.tag, this.#writer),
            layout.groupSessions(g.tag),
            layout.groupExpiry(g.tag),
            layout.groupBodies(g.tag),
            layout.groupRefs(g.tag),
            token,
            header,
            this.#markerTtl,
            ...g.blobs,
            ...g.wills,
          )
          .then(([, codes]) => {
            const list = codes.split(',')
            if (list.length !== g.positions.length) throw new Error(`persistence: ${list.length} results for ${g.positions.length} ops`)
            g.positions.forEach((position, k) => (results[position] = parseResult(list[k]!)))
          }),
      )
    }
    if (retained.length > 0) {
      calls.push(client.fbrokerPersistApplyRetained(layout.retainedIndex, layout.retainedPrefix, JSON.stringify(retained), ...retainedPayloads))
    }
    const wait = this.#waitFor
    if (wait !== undefined) {
      // On the same connection, after the scripts: waits for the replicas to have them.
      calls.push(
        (client as Redis).wait(wait.replicas, wait.timeoutMs).then((acked) => {
          if (acked < wait.replicas) throw new Error(`persistence: ${acked} of ${wait.replicas} replicas confirmed the batch within ${wait.timeoutMs} ms`)
        }),
      )
    }
    // Settle every call before reporting, so a retry never overtakes a call still under way.
    const settled = await Promise.allSettled(calls)
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected')
    if (failed !== undefined) {
      const err = failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason))
      this.#onError(err)
      throw err
    }
    return { results }
  }

  async #groups(): Promise<string[]> {
    return (await this.#client.smembers(this.layout.groups)).sort()
  }

  async load(): Promise<Snapshot> {
    this.#check()
    const sessions: RestoredSession[] = []
    // A Cluster can have thousands of groups: load them a batch at a time, pipelined.
    for (const tags of chunks(await this.#groups(), 64)) {
      for (const loaded of await Promise.all(tags.map((tag) => this.#loadGroup(tag)))) sessions.push(...loaded)
    }
    sessions.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0))
    return { sessions, retained: await this.#retained(undefined) }
  }

  /** The sessions of one group, each with its state; message objects are shared within the group. */
  async #loadGroup(tag: string): Promise<RestoredSession[]> {
    const client = this.#client
    const layout = this.layout
    const sessions: RestoredSession[] = []
    const ids = new Set<string>()
    let cursor = '0'
    do {
      const [next, page] = await client.sscan(layout.groupSessions(tag), cursor, 'COUNT', this.#page)
      for (const id of page) ids.add(id)
      cursor = next
    } while (cursor !== '0')

    const bodyKey = layout.groupBodies(tag)
    const bodies = new Map<string, StoredMessage | undefined>()
    const raw: Array<{
      clientId: string
      session: Record<string, Buffer>
      subs: Record<string, string>
      queue: string[]
      inflight: Record<string, string>
      incoming: string[]
    }> = []
    for (const page of chunks([...ids], this.#page)) {
      const fetched = await Promise.all(
        page.map(async (clientId) => {
          const base = layout.clientBase(clientId)
          const [session, subs, queue, inflight, incoming] = await Promise.all([
            client.hgetallBuffer(`${base}s`),
            client.hgetall(`${base}subs`),
            client.lrange(`${base}q`, 0, -1),
            client.hgetall(`${base}inf`),
            client.smembers(`${base}in`),
          ])
          return { clientId, session, subs, queue, inflight, incoming }
        }),
      )
      for (const r of fetched) {
        if (Object.keys(r.session).length === 0) continue // deleted meanwhile
        raw.push(r)
        for (const e of r.queue) {
          const m = QUEUE_ENTRY.exec(e)
          if (m !== null) bodies.set(m[4]!, undefined)
        }
        for (const e of Object.values(r.inflight)) {
          const m = INFLIGHT_ENTRY.exec(e)
          if (m !== null && m[4] !== '') bodies.set(m[4]!, undefined)
        }
      }
    }
    for (const page of chunks([...bodies.keys()], this.#page)) {
      const fetched = await client.hmgetBuffer(bodyKey, ...page)
      page.forEach((id, k) => {
        const data = fetched[k]
        const message = data == null ? undefined : bodyMessage(id, data)
        if (message !== undefined) bodies.set(id, message)
      })
    }

    for (const r of raw) {
      const queue: QueueEntry[] = []
      for (const e of r.queue) {
        const m = QUEUE_ENTRY.exec(e)
        const message = m === null ? undefined : bodies.get(m[4]!)
        if (message !== undefined) queue.push({ message, qos: Number(m![1]) as QoS, retain: m![2] === '1' })
      }
      const inflight: Array<InflightEntry & { seq: number }> = []
      for (const [pid, e] of Object.entries(r.inflight)) {
        const m = INFLIGHT_ENTRY.exec(e)
        if (m === null) continue
        const stage = CODE_STAGE[m[2]!]!
        const entry: InflightEntry & { seq: number } = { seq: Number(m[1]), packetId: Number(pid), stage, qos: stageQoS(stage), retain: m[3] === '1' }
        const message = m[4] === '' ? undefined : bodies.get(m[4]!)
        if (message !== undefined) entry.message = message
        inflight.push(entry)
      }
      inflight.sort((a, b) => a.seq - b.seq)
      sessions.push({
        clientId: r.clientId,
        session: toSession(r.session),
        subscriptions: Object.keys(r.subs)
          .sort(compareBytes)
          .map((filter) => ({ filter, qos: Number(r.subs[filter]) as QoS })),
        queue,
        inflight: inflight.map(({ seq: _seq, ...entry }) => entry),
        incoming: r.incoming.map(Number).sort((a, b) => a - b),
      })
    }
    return sessions
  }

  async matchRetained(filter: string): Promise<StoredMessage[]> {
    this.#check()
    const problem = topicFilterProblem(filter)
    if (problem !== undefined) throw new TypeError(`filter ${problem}`)
    return this.#retained(filter)
  }

  /**
   * Retained messages matching `filter` (all of them when undefined), sorted
   * by topic. Walks only the part of the lexicographic index that starts
   * with the filter's literal prefix.
   */
  async #retained(filter: string | undefined): Promise<StoredMessage[]> {
    const client = this.#client
    const layout = this.layout
    let topics: string[]
    const prefix = filter === undefined ? '' : literalPrefix(filter)
    if (filter !== undefined && prefix === undefined) {
      topics = [filter]
    } else {
      const ranges: Array<[Buffer, Buffer]> = []
      const b = (s: string) => Buffer.from(s, 'utf8')
      if (prefix === '' && filter !== undefined) {
        // A filter starting with a wildcard never matches topics starting with '$'.
        ranges.push([b('-'), b('($')], [b('[%'), b('+')])
      } else if (prefix === '') {
        ranges.push([b('-'), b('+')])
      } else {
        ranges.push([b(`[${prefix}`), Buffer.concat([b(`(${prefix}`), Buffer.from([0xff])])])
      }
      topics = []
      for (const [min, max] of ranges) {
        let from = min
        for (;;) {
          const page = await client.zrangebylex(layout.retainedIndex, from, max, 'LIMIT', 0, this.#page)
          for (const t of page) if (filter === undefined || topicMatches(filter, t)) topics.push(t)
          if (page.length < this.#page) break
          from = b(`(${page[page.length - 1]!}`)
        }
      }
    }
    const out: StoredMessage[] = []
    for (const page of chunks(topics, this.#page)) {
      const fetched = await Promise.all(page.map((t) => client.hgetallBuffer(layout.retainedPrefix + t)))
      page.forEach((topic, k) => {
        const h = fetched[k]!
        if (h.id !== undefined) out.push(toMessage(text(h.id), topic, h, true))
      })
    }
    return out.sort((x, y) => compareBytes(x.topic, y.topic))
  }

  async expire(now: number): Promise<string[]> {
    this.#check()
    if (!Number.isFinite(now)) throw new TypeError('now must be a number')
    const layout = this.layout
    const removed: string[] = []
    const sweep = async (tag: string) => {
      for (;;) {
        const [examined, ids] = await this.#client.fbrokerPersistExpireGroup(
          layout.groupExpiry(tag),
          layout.groupSessions(tag),
          layout.groupBodies(tag),
          layout.groupRefs(tag),
          String(now),
          this.#page,
          layout.clientPrefix,
        )
        removed.push(...ids)
        if (examined < this.#page) break
      }
    }
    // A Cluster can have thousands of groups: sweep them a batch at a time, pipelined.
    for (const tags of chunks(await this.#groups(), 64)) await Promise.all(tags.map(sweep))
    return removed.sort()
  }
}

/** Creates the Redis backend (call `open()` before use). */
export function createRedisPersistence(options: RedisPersistenceOptions = {}): RedisPersistence {
  return new RedisPersistence(options)
}
