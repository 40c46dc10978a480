/**
 * Translation between the native core's persistence journal (batches of
 * flat ops, messages listed once per batch) and the backends' `PersistOp`
 * contract, and from a backend's `Snapshot` to what the core restores at
 * start. No I/O here: `controller.ts` moves the data.
 */

import type { PersistOp, QoS, SessionRecord, Snapshot, StoredMessage, WillMessage } from './types'

/** A message as the binding hands it over; `id` is a decimal u64. */
export interface NativeStoredMessage {
  id: string
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
}

export interface NativeStoredWill {
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
}

/** One op of a journal batch; `message` indexes the batch's `messages`. */
export interface NativePersistOp {
  op: string
  clientId?: string
  message?: number
  packetId?: number
  stage?: string
  qos?: number
  retain?: boolean
  filter?: string
  topic?: string
  connected?: boolean
  expirySecs?: number
  will?: NativeStoredWill
}

export interface NativePersistBatch {
  seq: number
  messages: NativeStoredMessage[]
  ops: NativePersistOp[]
}

export interface NativeStoredInflight {
  packetId: number
  stage: string
  message?: NativeStoredMessage
  qos: number
  retain?: boolean
}

export interface NativeStoredSession {
  clientId: string
  /** Absent: the broker went down while the client was connected. */
  disconnectedAtMs?: number
  will?: NativeStoredWill
  subscriptions: { filter: string; qos: number }[]
  queue: NativeStoredMessage[]
  inflight: NativeStoredInflight[]
  incomingQos2: number[]
}

export type PersistenceMode = 'ack_after_store' | 'async'

export interface NativePersistence {
  mode: PersistenceMode
  sessions: NativeStoredSession[]
  retained: NativeStoredMessage[]
}

export interface BridgeContext {
  /** This broker node's id, stored as the session owner. */
  nodeId: string
  /** ms since the epoch, for lastSeen and expiresAt. */
  now: number
}

function qos(n: number | undefined, fallback: QoS = 0): QoS {
  return n === 0 || n === 1 || n === 2 ? n : fallback
}

function storedMessage(m: NativeStoredMessage): StoredMessage {
  return { id: m.id, topic: m.topic, payload: m.payload, qos: qos(m.qos), retain: m.retain }
}

function will(w: NativeStoredWill | undefined): WillMessage | null {
  return w ? { topic: w.topic, payload: w.payload, qos: qos(w.qos), retain: w.retain } : null
}

function required<T>(value: T | undefined, field: string, op: NativePersistOp): T {
  if (value === undefined) throw new TypeError(`journal op ${op.op} has no ${field}`)
  return value
}

/**
 * The backend ops of one journal batch, in the core's order. Message
 * objects shared by several ops are the same object, so a backend stores the
 * payload once.
 */
export function toPersistOps(batch: NativePersistBatch, ctx: BridgeContext): PersistOp[] {
  const messages = batch.messages.map(storedMessage)
  const message = (op: NativePersistOp): StoredMessage => {
    const m = messages[required(op.message, 'message', op)]
    if (!m) throw new TypeError(`journal op ${op.op} names message ${op.message}, the batch has ${messages.length}`)
    return m
  }
  const out: PersistOp[] = []
  for (const op of batch.ops) {
    const clientId = op.clientId ?? ''
    switch (op.op) {
      case 'session.save': {
        const connected = op.connected === true
        const session: SessionRecord = {
          clean: false,
          connected,
          // While connected the session cannot expire; the clock starts at
          // the disconnect.
          expiresAt: connected || op.expirySecs === undefined ? null : ctx.now + op.expirySecs * 1000,
          lastSeen: ctx.now,
          node: ctx.nodeId,
          epoch: 0,
          will: will(op.will),
        }
        out.push({ op: 'session.save', clientId, session })
        break
      }
      case 'session.delete':
        out.push({ op: 'session.delete', clientId })
        break
      case 'sub.add':
        out.push({ op: 'sub.add', clientId, filter: required(op.filter, 'filter', op), qos: qos(op.qos) })
        break
      case 'sub.remove':
        out.push({ op: 'sub.remove', clientId, filter: required(op.filter, 'filter', op) })
        break
      case 'queue.push':
        out.push({ op: 'queue.push', clientId, message: message(op), qos: qos(op.qos, 1), retain: op.retain === true })
        break
      case 'queue.remove':
        // The core removes queued messages oldest first (sent, or evicted by
        // its own limits, which are at least as strict as the store's), so
        // the named message is the head of the stored queue.
        out.push({ op: 'queue.remove', clientId, count: 1 })
        break
      case 'inflight.set': {
        const stage = required(op.stage, 'stage', op)
        if (stage !== 'puback' && stage !== 'pubrec' && stage !== 'pubcomp') throw new TypeError(`journal op inflight.set has stage ${stage}`)
        const entry: PersistOp = { op: 'inflight.set', clientId, packetId: required(op.packetId, 'packetId', op), stage }
        if (op.message !== undefined) entry.message = message(op)
        if (op.retain !== undefined) entry.retain = op.retain
        out.push(entry)
        break
      }
      case 'inflight.clear':
        out.push({ op: 'inflight.clear', clientId, packetId: required(op.packetId, 'packetId', op) })
        break
      case 'incoming.add':
        out.push({ op: 'incoming.add', clientId, packetId: required(op.packetId, 'packetId', op) })
        break
      case 'incoming.remove':
        out.push({ op: 'incoming.remove', clientId, packetId: required(op.packetId, 'packetId', op) })
        break
      case 'retained.set':
        out.push({ op: 'retained.set', topic: required(op.topic, 'topic', op), message: message(op) })
        break
      case 'retained.delete':
        out.push({ op: 'retained.delete', topic: required(op.topic, 'topic', op) })
        break
      default:
        throw new TypeError(`unknown journal op ${op.op}`)
    }
  }
  return out
}

function nativeMessage(m: StoredMessage, deliveryQos?: QoS, retain?: boolean): NativeStoredMessage {
  return { id: m.id, topic: m.topic, payload: m.payload, qos: deliveryQos ?? m.qos, retain: retain ?? m.retain }
}

/** What the core restores at start, from a backend's snapshot. */
export function toNativePersistence(snapshot: Snapshot, mode: PersistenceMode): NativePersistence {
  const sessions: NativeStoredSession[] = []
  for (const s of snapshot.sessions) {
    // Clean sessions do not outlive their connection.
    if (s.session.clean) continue
    const out: NativeStoredSession = {
      clientId: s.clientId,
      subscriptions: s.subscriptions.map((sub) => ({ filter: sub.filter, qos: sub.qos })),
      queue: s.queue.map((e) => nativeMessage(e.message, e.qos, e.retain)),
      inflight: s.inflight.map((e) => {
        const entry: NativeStoredInflight = { packetId: e.packetId, stage: e.stage, qos: e.qos, retain: e.retain }
        if (e.message) entry.message = nativeMessage(e.message)
        return entry
      }),
      incomingQos2: [...s.incoming],
    }
    if (!s.session.connected) out.disconnectedAtMs = s.session.lastSeen
    const w = s.session.will
    if (w) out.will = { topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain }
    sessions.push(out)
  }
  return { mode, sessions, retained: snapshot.retained.map((m) => nativeMessage(m)) }
}
