/**
 * Translation between the native core's persistence journal (batches of
 * flat ops, messages listed once per batch) and the backends' `PersistOp`
 * contract, and from a backend's `Snapshot` to what the core restores at
 * start. No I/O here: `controller.ts` moves the data.
 */

import { decodeJournalBatch, JournalWireError, NO_MESSAGE, WireOp, type WireWill } from './journalWire'
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

/** One journal batch: `data` is its wire form (./journalWire.ts). */
export interface NativePersistBatch {
  seq: number
  data: Buffer
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

function will(w: WireWill | undefined): WillMessage | null {
  return w ? { topic: w.topic, payload: w.payload, qos: qos(w.qos), retain: w.retain } : null
}

const STAGES = ['puback', 'pubrec', 'pubcomp'] as const

/**
 * The backend ops of one journal batch, in the core's order. Message
 * objects shared by several ops are the same object, so a backend stores the
 * payload once. Throws `JournalWireError` on a malformed batch.
 */
export function toPersistOps(batch: NativePersistBatch, ctx: BridgeContext): PersistOp[] {
  const wire = decodeJournalBatch(batch.data)
  const messages: StoredMessage[] = wire.messages.map((m) => ({ id: m.id, topic: m.topic, payload: m.payload, qos: qos(m.qos), retain: m.retain }))
  const message = (index: number, kind: string): StoredMessage => {
    const m = messages[index]
    if (m === undefined) throw new JournalWireError(`${kind} has no message`)
    return m
  }
  const out: PersistOp[] = new Array<PersistOp>(wire.ops.length)
  for (let i = 0; i < wire.ops.length; i++) {
    const op = wire.ops[i]!
    const clientId = op.clientId
    switch (op.kind) {
      case WireOp.SessionSave: {
        const connected = op.connected
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
        out[i] = { op: 'session.save', clientId, session }
        break
      }
      case WireOp.SessionDelete:
        out[i] = { op: 'session.delete', clientId }
        break
      case WireOp.SubAdd:
        out[i] = { op: 'sub.add', clientId, filter: op.text, qos: qos(op.qos) }
        break
      case WireOp.SubRemove:
        out[i] = { op: 'sub.remove', clientId, filter: op.text }
        break
      case WireOp.QueuePush:
        out[i] = { op: 'queue.push', clientId, message: message(op.message, 'queue.push'), qos: qos(op.qos, 1), retain: op.retain }
        break
      case WireOp.QueueRemove:
        // The core removes queued messages oldest first (sent, or evicted by
        // its own limits, which are at least as strict as the store's), so
        // the named message is the head of the stored queue.
        out[i] = { op: 'queue.remove', clientId, count: 1 }
        break
      case WireOp.InflightSet: {
        const stage = STAGES[op.stage]
        if (stage === undefined) throw new JournalWireError(`inflight.set has stage ${op.stage}`)
        const entry: PersistOp = { op: 'inflight.set', clientId, packetId: op.packetId, stage, retain: op.retain }
        if (op.message !== NO_MESSAGE) entry.message = message(op.message, 'inflight.set')
        out[i] = entry
        break
      }
      case WireOp.InflightClear:
        out[i] = { op: 'inflight.clear', clientId, packetId: op.packetId }
        break
      case WireOp.IncomingAdd:
        out[i] = { op: 'incoming.add', clientId, packetId: op.packetId }
        break
      case WireOp.IncomingRemove:
        out[i] = { op: 'incoming.remove', clientId, packetId: op.packetId }
        break
      case WireOp.RetainedSet: {
        const m = message(op.message, 'retained.set')
        out[i] = { op: 'retained.set', topic: m.topic, message: m }
        break
      }
      case WireOp.RetainedDelete:
        out[i] = { op: 'retained.delete', topic: op.text }
        break
      default:
        throw new JournalWireError(`unknown op kind ${op.kind}`)
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
