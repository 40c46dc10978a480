/**
 * The in-memory backend: the reference semantics of the persistence contract
 * (the Redis backend must behave the same; test/backends/persistence.abstract.ts
 * checks both), and a stand-in for tests. Nothing survives the process.
 */
import { topicMatches } from '../auth/acl'
import { compareBytes, stageQoS, topicFilterProblem, validateOps } from './ops'
import type {
  ApplyOptions,
  ApplyResult,
  BackendHealth,
  DropPolicy,
  InflightEntry,
  InflightStage,
  OpResult,
  PersistOp,
  PersistenceBackend,
  QoS,
  RestoredSession,
  SessionRecord,
  Snapshot,
  StoredMessage,
} from './types'

/** Bounds of every session queue (the broker's `max_queued_messages`, `max_queued_bytes`, `queue_drop_policy`). */
export interface QueueLimits {
  /** Most messages per queue; 0 = unlimited. Default 1000. */
  maxMessages?: number
  /** Most payload bytes per queue; 0 = unlimited. Default 0. */
  maxBytes?: number
  /** Default `drop_oldest`. */
  policy?: DropPolicy
}

export const DEFAULT_QUEUE_LIMITS: Readonly<Required<QueueLimits>> = { maxMessages: 1000, maxBytes: 0, policy: 'drop_oldest' }

/** Checks and completes queue limits. */
export function resolveQueueLimits(limits: QueueLimits | undefined): Required<QueueLimits> {
  const out = { ...DEFAULT_QUEUE_LIMITS, ...limits }
  for (const key of ['maxMessages', 'maxBytes'] as const) {
    if (!Number.isSafeInteger(out[key]) || out[key] < 0) throw new RangeError(`queue.${key} must be a non-negative integer, got ${String(out[key])}`)
  }
  if (out.policy !== 'drop_oldest' && out.policy !== 'drop_new') throw new RangeError(`queue.policy must be drop_oldest or drop_new, got ${String(out.policy)}`)
  return out
}

export interface MemoryPersistenceOptions {
  queue?: QueueLimits
}

interface QueueItem {
  id: string
  qos: QoS
  retain: boolean
  bytes: number
}

interface InflightItem {
  seq: number
  stage: InflightStage
  retain: boolean
  /** '' when no message is held (stage pubcomp). */
  id: string
}

interface ClientState {
  session: SessionRecord
  subs: Map<string, QoS>
  queue: QueueItem[]
  queueBytes: number
  inflight: Map<number, InflightItem>
  seq: number
  incoming: Set<number>
  lastBatch?: { id: string; results: OpResult[] }
}

function copyMessage(m: StoredMessage): StoredMessage {
  const out: StoredMessage = { id: m.id, topic: m.topic, payload: Buffer.from(m.payload), qos: m.qos, retain: m.retain }
  if (m.publisher !== undefined && m.publisher !== '') out.publisher = m.publisher
  if (m.timestamp !== undefined) out.timestamp = m.timestamp
  return out
}

function copySession(s: SessionRecord): SessionRecord {
  return {
    clean: s.clean,
    connected: s.connected,
    expiresAt: s.expiresAt,
    lastSeen: s.lastSeen,
    node: s.node,
    epoch: s.epoch,
    will: s.will === null ? null : { topic: s.will.topic, payload: Buffer.from(s.will.payload), qos: s.will.qos, retain: s.will.retain },
  }
}

/** The ops that name a client. */
type ClientOp = Exclude<PersistOp, { op: 'retained.set' | 'retained.delete' }>

let batchCounter = 0

/** The in-memory backend. */
export class MemoryPersistence implements PersistenceBackend {
  readonly kind = 'memory'
  readonly #limits: Required<QueueLimits>
  readonly #clients = new Map<string, ClientState>()
  readonly #bodies = new Map<string, { message: StoredMessage; refs: number }>()
  readonly #retained = new Map<string, StoredMessage>()
  #open = false
  #closed = false

  constructor(options: MemoryPersistenceOptions = {}) {
    this.#limits = resolveQueueLimits(options.queue)
  }

  async open(): Promise<void> {
    if (this.#closed) throw new Error('memory persistence: closed')
    this.#open = true
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#open = false
  }

  health(): BackendHealth {
    return { connected: this.#open, status: this.#closed ? 'closed' : this.#open ? 'open' : 'new' }
  }

  #check(): void {
    if (!this.#open) throw new Error(`memory persistence: ${this.#closed ? 'closed' : 'not open'}`)
  }

  /** Counts for tests and diagnostics: what is held, and a flat list naming every stored item. */
  inspect(): { sessions: number; messages: number; retained: number; items: string[] } {
    const items: string[] = []
    for (const [id, c] of this.#clients) {
      items.push(`session:${id}`)
      for (const f of c.subs.keys()) items.push(`sub:${id}:${f}`)
      c.queue.forEach((q, i) => items.push(`queue:${id}:${i}:${q.id}`))
      for (const [pid, e] of c.inflight) items.push(`inflight:${id}:${pid}:${e.id}`)
      for (const pid of c.incoming) items.push(`incoming:${id}:${pid}`)
    }
    for (const id of this.#bodies.keys()) items.push(`message:${id}`)
    for (const topic of this.#retained.keys()) items.push(`retained:${topic}`)
    return { sessions: this.#clients.size, messages: this.#bodies.size, retained: this.#retained.size, items }
  }

  #ref(id: string, message: StoredMessage | undefined): boolean {
    const body = this.#bodies.get(id)
    if (body !== undefined) {
      body.refs++
      return true
    }
    if (message === undefined) return false
    this.#bodies.set(id, { message: copyMessage(message), refs: 1 })
    return true
  }

  #unref(id: string): void {
    if (id === '') return
    const body = this.#bodies.get(id)
    if (body === undefined) return
    if (--body.refs <= 0) this.#bodies.delete(id)
  }

  #clear(clientId: string): void {
    const c = this.#clients.get(clientId)
    if (c === undefined) return
    for (const q of c.queue) this.#unref(q.id)
    for (const e of c.inflight.values()) this.#unref(e.id)
    this.#clients.delete(clientId)
  }

  async apply(ops: readonly PersistOp[], options: ApplyOptions = {}): Promise<ApplyResult> {
    this.#check()
    validateOps(ops)
    const batchId = options.batchId ?? `memory-${++batchCounter}`
    const results: OpResult[] = new Array<OpResult>(ops.length).fill(null)
    // Per client, in order; retained ops in order. (Applied all at once here,
    // so grouping only matters for the per-client replay protection.)
    const byClient = new Map<string, number[]>()
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!
      if (op.op === 'retained.set') this.#retained.set(op.topic, { ...copyMessage(op.message), retain: true })
      else if (op.op === 'retained.delete') this.#retained.delete(op.topic)
      else {
        let list = byClient.get(op.clientId)
        if (list === undefined) byClient.set(op.clientId, (list = []))
        list.push(i)
      }
    }
    for (const [clientId, indexes] of byClient) {
      const last = this.#clients.get(clientId)?.lastBatch
      if (last !== undefined && last.id === batchId) {
        indexes.forEach((index, k) => (results[index] = last.results[k] ?? null))
        continue
      }
      const own = indexes.map((index) => this.#applyClientOp(clientId, ops[index] as ClientOp))
      indexes.forEach((index, k) => (results[index] = own[k]!))
      const c = this.#clients.get(clientId)
      if (c !== undefined) c.lastBatch = { id: batchId, results: own }
    }
    return { results }
  }

  #applyClientOp(clientId: string, op: ClientOp): OpResult {
    if (op.op === 'session.save') {
      const c = this.#clients.get(clientId)
      if (c !== undefined) c.session = copySession(op.session)
      else {
        this.#clients.set(clientId, {
          session: copySession(op.session),
          subs: new Map(),
          queue: [],
          queueBytes: 0,
          inflight: new Map(),
          seq: 0,
          incoming: new Set(),
        })
      }
      return null
    }
    if (op.op === 'session.delete') {
      this.#clear(clientId)
      return null
    }
    const c = this.#clients.get(clientId)
    if (c === undefined) {
      if (op.op === 'queue.push') return { kind: 'dropped', reason: 'no_session' }
      if (op.op === 'queue.remove') return { kind: 'removed', count: 0 }
      return null
    }
    switch (op.op) {
      case 'sub.add':
        c.subs.set(op.filter, op.qos)
        return null
      case 'sub.remove':
        c.subs.delete(op.filter)
        return null
      case 'queue.push': {
        const { maxMessages, maxBytes, policy } = this.#limits
        const size = op.message.payload.length
        if (maxBytes !== 0 && size > maxBytes) return { kind: 'dropped', reason: 'too_large' }
        const over = () =>
          (maxMessages !== 0 && c.queue.length + 1 > maxMessages) || (maxBytes !== 0 && c.queueBytes + size > maxBytes)
        if (over() && policy === 'drop_new') return { kind: 'dropped', reason: 'queue_full' }
        let evicted = 0
        while (over() && c.queue.length > 0) {
          const old = c.queue.shift()!
          c.queueBytes -= old.bytes
          this.#unref(old.id)
          evicted++
        }
        this.#ref(op.message.id, op.message)
        c.queue.push({ id: op.message.id, qos: op.qos ?? op.message.qos, retain: op.retain ?? false, bytes: size })
        c.queueBytes += size
        return { kind: 'queued', evicted }
      }
      case 'queue.remove': {
        const removed = c.queue.splice(0, op.count)
        for (const q of removed) {
          c.queueBytes -= q.bytes
          this.#unref(q.id)
        }
        return { kind: 'removed', count: removed.length }
      }
      case 'inflight.set': {
        const old = c.inflight.get(op.packetId)
        const oldId = old?.id ?? ''
        let id = op.stage === 'pubcomp' ? '' : (op.message?.id ?? oldId)
        if (id !== '' && id !== oldId && !this.#ref(id, op.message)) id = ''
        if (oldId !== '' && oldId !== id) this.#unref(oldId)
        c.inflight.set(op.packetId, {
          seq: old?.seq ?? ++c.seq,
          stage: op.stage,
          retain: op.retain ?? old?.retain ?? false,
          id,
        })
        return null
      }
      case 'inflight.clear': {
        const old = c.inflight.get(op.packetId)
        if (old !== undefined) {
          this.#unref(old.id)
          c.inflight.delete(op.packetId)
        }
        return null
      }
      case 'incoming.add':
        c.incoming.add(op.packetId)
        return null
      case 'incoming.remove':
        c.incoming.delete(op.packetId)
        return null
    }
  }

  async load(): Promise<Snapshot> {
    this.#check()
    const copies = new Map<string, StoredMessage>()
    const message = (id: string): StoredMessage | undefined => {
      let m = copies.get(id)
      if (m === undefined) {
        const body = this.#bodies.get(id)
        if (body === undefined) return undefined
        copies.set(id, (m = copyMessage(body.message)))
      }
      return m
    }
    const sessions: RestoredSession[] = []
    for (const clientId of [...this.#clients.keys()].sort()) {
      const c = this.#clients.get(clientId)!
      const inflight: InflightEntry[] = [...c.inflight.entries()]
        .sort((a, b) => a[1].seq - b[1].seq)
        .map(([packetId, e]) => {
          const entry: InflightEntry = { packetId, stage: e.stage, qos: stageQoS(e.stage), retain: e.retain }
          const m = e.id === '' ? undefined : message(e.id)
          if (m !== undefined) entry.message = m
          return entry
        })
      sessions.push({
        clientId,
        session: copySession(c.session),
        subscriptions: [...c.subs.entries()].sort((a, b) => compareBytes(a[0], b[0])).map(([filter, qos]) => ({ filter, qos })),
        queue: c.queue.flatMap((q) => {
          const m = message(q.id)
          return m === undefined ? [] : [{ message: m, qos: q.qos, retain: q.retain }]
        }),
        inflight,
        incoming: [...c.incoming].sort((a, b) => a - b),
      })
    }
    const retained = [...this.#retained.keys()].sort(compareBytes).map((t) => copyMessage(this.#retained.get(t)!))
    return { sessions, retained }
  }

  async matchRetained(filter: string): Promise<StoredMessage[]> {
    this.#check()
    const problem = topicFilterProblem(filter)
    if (problem !== undefined) throw new TypeError(`filter ${problem}`)
    return [...this.#retained.keys()]
      .filter((t) => topicMatches(filter, t))
      .sort(compareBytes)
      .map((t) => copyMessage(this.#retained.get(t)!))
  }

  async expire(now: number): Promise<string[]> {
    this.#check()
    const gone: string[] = []
    for (const [clientId, c] of this.#clients) {
      if (c.session.expiresAt !== null && c.session.expiresAt <= now) gone.push(clientId)
    }
    for (const clientId of gone) this.#clear(clientId)
    return gone.sort()
  }
}
