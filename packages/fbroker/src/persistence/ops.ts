/**
 * Helpers shared by every backend and the durable writer: op validation,
 * size estimates, and the topic arithmetic of the retained index.
 */
import type { InflightStage, PersistOp, QoS, SessionRecord, StoredMessage, WillMessage } from './types'

/** A malformed op: nothing of its batch was applied. */
export class PersistOpError extends TypeError {
  /** Index of the offending op in its batch. */
  readonly index: number

  constructor(index: number, op: unknown, problem: string) {
    const name = typeof op === 'object' && op !== null && typeof (op as { op?: unknown }).op === 'string' ? ` (${(op as { op: string }).op})` : ''
    super(`ops[${index}]${name}: ${problem}`)
    this.name = 'PersistOpError'
    this.index = index
  }
}

const STAGES: ReadonlySet<string> = new Set<InflightStage>(['puback', 'pubrec', 'pubcomp'])

function isQoS(v: unknown): v is QoS {
  return v === 0 || v === 1 || v === 2
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0
}

function isPacketId(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535
}

/** Problem with an MQTT topic name (no wildcards), or undefined. */
export function topicNameProblem(topic: unknown): string | undefined {
  if (!isNonEmptyString(topic)) return 'must be a non-empty string'
  if (topic.includes('+') || topic.includes('#')) return 'must not contain wildcards'
  if (topic.includes('\u0000')) return 'must not contain U+0000'
  return undefined
}

/** Problem with an MQTT topic filter, or undefined. */
export function topicFilterProblem(filter: unknown): string | undefined {
  if (!isNonEmptyString(filter)) return 'must be a non-empty string'
  if (filter.includes('\u0000')) return 'must not contain U+0000'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "'#' must be a whole level and the last one"
    if (level.includes('+') && level !== '+') return "'+' must be a whole level"
  }
  return undefined
}

function messageProblem(m: unknown, what: string): string | undefined {
  if (typeof m !== 'object' || m === null) return `${what} must be an object`
  const msg = m as Partial<StoredMessage>
  if (!isNonEmptyString(msg.id)) return `${what}.id must be a non-empty string`
  const topic = topicNameProblem(msg.topic)
  if (topic !== undefined) return `${what}.topic ${topic}`
  if (!Buffer.isBuffer(msg.payload)) return `${what}.payload must be a Buffer`
  if (!isQoS(msg.qos)) return `${what}.qos must be 0, 1 or 2`
  if (typeof msg.retain !== 'boolean') return `${what}.retain must be a boolean`
  if (msg.publisher !== undefined && typeof msg.publisher !== 'string') return `${what}.publisher must be a string`
  if (msg.timestamp !== undefined && !isTime(msg.timestamp)) return `${what}.timestamp must be a non-negative number`
  return undefined
}

function willProblem(w: unknown): string | undefined {
  if (w === null) return undefined
  if (typeof w !== 'object') return 'session.will must be null or an object'
  const will = w as Partial<WillMessage>
  const topic = topicNameProblem(will.topic)
  if (topic !== undefined) return `session.will.topic ${topic}`
  if (!Buffer.isBuffer(will.payload)) return 'session.will.payload must be a Buffer'
  if (!isQoS(will.qos)) return 'session.will.qos must be 0, 1 or 2'
  if (typeof will.retain !== 'boolean') return 'session.will.retain must be a boolean'
  return undefined
}

function sessionProblem(s: unknown): string | undefined {
  if (typeof s !== 'object' || s === null) return 'session must be an object'
  const session = s as Partial<SessionRecord>
  if (typeof session.clean !== 'boolean') return 'session.clean must be a boolean'
  if (typeof session.connected !== 'boolean') return 'session.connected must be a boolean'
  if (session.expiresAt !== null && !isTime(session.expiresAt)) return 'session.expiresAt must be null or a non-negative number'
  if (!isTime(session.lastSeen)) return 'session.lastSeen must be a non-negative number'
  if (typeof session.node !== 'string') return 'session.node must be a string'
  if (!Number.isSafeInteger(session.epoch) || (session.epoch as number) < 0) return 'session.epoch must be a non-negative integer'
  if (!('will' in session)) return 'session.will must be null or an object'
  return willProblem(session.will)
}

function opProblem(op: unknown): string | undefined {
  if (typeof op !== 'object' || op === null) return 'must be an object'
  const o = op as Record<string, unknown>
  const kind = o.op
  if (kind === 'retained.set' || kind === 'retained.delete') {
    const topic = topicNameProblem(o.topic)
    if (topic !== undefined) return `topic ${topic}`
    if (kind === 'retained.set') {
      const m = messageProblem(o.message, 'message')
      if (m !== undefined) return m
      if ((o.message as StoredMessage).topic !== o.topic) return 'message.topic must equal topic'
    }
    return undefined
  }
  if (!isNonEmptyString(o.clientId)) return 'clientId must be a non-empty string'
  switch (kind) {
    case 'session.save':
      return sessionProblem(o.session)
    case 'session.delete':
      return undefined
    case 'sub.add':
      return topicFilterProblem(o.filter) === undefined
        ? isQoS(o.qos)
          ? undefined
          : 'qos must be 0, 1 or 2'
        : `filter ${topicFilterProblem(o.filter)}`
    case 'sub.remove':
      return topicFilterProblem(o.filter) === undefined ? undefined : `filter ${topicFilterProblem(o.filter)}`
    case 'queue.push':
      if (o.qos !== undefined && !isQoS(o.qos)) return 'qos must be 0, 1 or 2'
      if (o.retain !== undefined && typeof o.retain !== 'boolean') return 'retain must be a boolean'
      return messageProblem(o.message, 'message')
    case 'queue.remove':
      return Number.isSafeInteger(o.count) && (o.count as number) >= 0 ? undefined : 'count must be a non-negative integer'
    case 'inflight.set':
      if (!isPacketId(o.packetId)) return 'packetId must be an integer from 1 to 65535'
      if (typeof o.stage !== 'string' || !STAGES.has(o.stage)) return "stage must be 'puback', 'pubrec' or 'pubcomp'"
      if (o.retain !== undefined && typeof o.retain !== 'boolean') return 'retain must be a boolean'
      return o.message === undefined ? undefined : messageProblem(o.message, 'message')
    case 'inflight.clear':
    case 'incoming.add':
    case 'incoming.remove':
      return isPacketId(o.packetId) ? undefined : 'packetId must be an integer from 1 to 65535'
    default:
      return `unknown op ${JSON.stringify(kind)}`
  }
}

/** Throws a `PersistOpError` naming the first malformed op. */
export function validateOps(ops: readonly PersistOp[]): void {
  if (!Array.isArray(ops)) throw new TypeError('ops must be an array')
  for (let i = 0; i < ops.length; i++) {
    const problem = opProblem(ops[i])
    if (problem !== undefined) throw new PersistOpError(i, ops[i], problem)
  }
}

/** Fixed per-op allowance of `estimateBytes` (object overhead, numbers, flags). */
export const OP_OVERHEAD_BYTES = 64

/**
 * Approximate memory held by a batch while it is buffered: a fixed overhead
 * per op, its strings, and each payload once per message id (a fan-out
 * shares one payload).
 */
export function estimateBytes(ops: readonly PersistOp[]): number {
  let bytes = 0
  const seen = new Set<string>()
  const message = (m: StoredMessage | undefined) => {
    if (m === undefined || seen.has(m.id)) return
    seen.add(m.id)
    bytes += m.payload.length + m.topic.length + m.id.length + (m.publisher?.length ?? 0)
  }
  for (const op of ops) {
    bytes += OP_OVERHEAD_BYTES
    switch (op.op) {
      case 'retained.set':
        bytes += op.topic.length
        message(op.message)
        break
      case 'retained.delete':
        bytes += op.topic.length
        break
      case 'session.save':
        bytes += op.clientId.length + op.session.node.length
        if (op.session.will !== null) bytes += op.session.will.topic.length + op.session.will.payload.length
        break
      case 'sub.add':
      case 'sub.remove':
        bytes += op.clientId.length + op.filter.length
        break
      case 'queue.push':
      case 'inflight.set':
        bytes += op.clientId.length
        message(op.message)
        break
      default:
        bytes += op.clientId.length
    }
  }
  return bytes
}

/**
 * The delivery QoS of an in-flight entry: 1 while it waits for PUBACK, 2 while
 * it waits for PUBREC or PUBCOMP.
 */
export function stageQoS(stage: InflightStage): QoS {
  return stage === 'puback' ? 1 : 2
}

/**
 * The literal part of a filter before its first wildcard level, as a string
 * prefix every matching topic starts with: `a/b/+/c` → `a/b/`, `a/b/#` →
 * `a/b` (which also covers the parent `a/b`), `#` → ''. Undefined for a
 * filter without wildcards (it can only match itself).
 */
export function literalPrefix(filter: string): string | undefined {
  const levels = filter.split('/')
  const first = levels.findIndex((l) => l === '+' || l === '#')
  if (first < 0) return undefined
  const literal = levels.slice(0, first).join('/')
  if (levels[first] === '#') return literal
  return first === 0 ? '' : `${literal}/`
}

/** Compares two strings by their UTF-8 bytes (Redis's lexicographic order). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}
