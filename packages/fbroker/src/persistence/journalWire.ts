/**
 * Decodes the wire form of a persistence journal batch, as the binding hands
 * it over (`crates/fbroker-node/src/journal_wire.rs`, which encodes it; keep
 * the two in step). One buffer per batch instead of an N-API object per op
 * and per message: building those objects was most of the main thread's
 * time under a stream of persisted publishes.
 *
 * All integers are little-endian; `str` is a u32 byte length and UTF-8.
 *
 *     u8  version (1)
 *     u32 client count, then each client id: str
 *     u32 message count, then each message:
 *         str id (decimal u64), str topic, u8 qos, u8 retain, u32 payload length, payload
 *     u32 op count, then each op: u8 kind, then
 *         1 session.save     u32 client, u8 connected, u8 has expiry, [f64 expiry secs],
 *                            u8 has will, [str topic, u8 qos, u8 retain, u32 length, payload]
 *         2 session.delete   u32 client
 *         3 sub.add          u32 client, str filter, u8 qos
 *         4 sub.remove       u32 client, str filter
 *         5 queue.push       u32 client, u32 message, u8 delivery qos, u8 retain
 *         6 queue.remove     u32 client, u32 message
 *         7 inflight.set     u32 client, u16 packet id, u8 stage (0 puback, 1 pubrec, 2 pubcomp),
 *                            u32 message (0xffffffff: none), u8 delivery qos, u8 retain
 *         8 inflight.clear   u32 client, u16 packet id
 *         9 incoming.add     u32 client, u16 packet id
 *         10 incoming.remove u32 client, u16 packet id
 *         11 retained.set    u32 message
 *         12 retained.delete str topic
 */

export const JOURNAL_WIRE_VERSION = 1
export const NO_MESSAGE = 0xffffffff

/** Op kinds of the wire form. */
export const WireOp = {
  SessionSave: 1,
  SessionDelete: 2,
  SubAdd: 3,
  SubRemove: 4,
  QueuePush: 5,
  QueueRemove: 6,
  InflightSet: 7,
  InflightClear: 8,
  IncomingAdd: 9,
  IncomingRemove: 10,
  RetainedSet: 11,
  RetainedDelete: 12,
} as const

export interface WireMessage {
  id: string
  topic: string
  /** A copy: a slice would keep the whole batch buffer alive for as long as a backend keeps the message. */
  payload: Buffer
  qos: number
  retain: boolean
}

export interface WireWill {
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
}

/** One decoded op: `kind` says which fields are set. */
export interface WireOpRecord {
  kind: number
  clientId: string
  /** Index into the batch's messages, or NO_MESSAGE. */
  message: number
  packetId: number
  /** 0 puback, 1 pubrec, 2 pubcomp. */
  stage: number
  qos: number
  retain: boolean
  /** sub.add/remove: the filter; retained.delete: the topic. */
  text: string
  connected: boolean
  expirySecs: number | undefined
  will: WireWill | undefined
}

export interface WireBatch {
  messages: WireMessage[]
  ops: WireOpRecord[]
}

/** The batch is not in the expected wire form (a binding/package version mismatch or a bug). */
export class JournalWireError extends Error {
  constructor(message: string) {
    super(`journal batch: ${message}`)
    this.name = 'JournalWireError'
  }
}

/** Reads a batch; throws `JournalWireError` on anything malformed. */
export function decodeJournalBatch(data: Buffer): WireBatch {
  let at = 0
  const need = (n: number) => {
    if (at + n > data.length) throw new JournalWireError(`truncated at byte ${at} (needs ${n} more of ${data.length})`)
  }
  const u8 = () => {
    need(1)
    return data[at++]!
  }
  const u16 = () => {
    need(2)
    const v = data.readUInt16LE(at)
    at += 2
    return v
  }
  const u32 = () => {
    need(4)
    const v = data.readUInt32LE(at)
    at += 4
    return v
  }
  const f64 = () => {
    need(8)
    const v = data.readDoubleLE(at)
    at += 8
    return v
  }
  const bytes = () => {
    const n = u32()
    need(n)
    const start = at
    at += n
    return [start, at] as const
  }
  const str = () => {
    const [a, b] = bytes()
    return data.toString('utf8', a, b)
  }
  const copy = () => {
    const [a, b] = bytes()
    return Buffer.from(data.subarray(a, b))
  }

  const version = u8()
  if (version !== JOURNAL_WIRE_VERSION) throw new JournalWireError(`version ${version}, expected ${JOURNAL_WIRE_VERSION}`)
  const clients = new Array<string>(u32())
  for (let i = 0; i < clients.length; i++) clients[i] = str()
  const messages = new Array<WireMessage>(u32())
  for (let i = 0; i < messages.length; i++) {
    const id = data.toString('latin1', ...bytes())
    const topic = str()
    const qos = u8()
    const retain = u8() === 1
    messages[i] = { id, topic, payload: copy(), qos, retain }
  }
  const client = () => {
    const index = u32()
    const id = clients[index]
    if (id === undefined) throw new JournalWireError(`client ${index} of ${clients.length}`)
    return id
  }
  const message = () => {
    const index = u32()
    if (index !== NO_MESSAGE && index >= messages.length) throw new JournalWireError(`message ${index} of ${messages.length}`)
    return index
  }
  const ops = new Array<WireOpRecord>(u32())
  for (let i = 0; i < ops.length; i++) {
    const op: WireOpRecord = {
      kind: u8(),
      clientId: '',
      message: NO_MESSAGE,
      packetId: 0,
      stage: 0,
      qos: 0,
      retain: false,
      text: '',
      connected: false,
      expirySecs: undefined,
      will: undefined,
    }
    if (op.kind < WireOp.SessionSave || op.kind > WireOp.RetainedDelete) throw new JournalWireError(`unknown op kind ${op.kind} at op ${i}`)
    // Every op but the retained ones belongs to a client, named first.
    if (op.kind !== WireOp.RetainedSet && op.kind !== WireOp.RetainedDelete) op.clientId = client()
    switch (op.kind) {
      case WireOp.SessionSave:
        op.connected = u8() === 1
        if (u8() === 1) op.expirySecs = f64()
        if (u8() === 1) {
          const topic = str()
          const qos = u8()
          const retain = u8() === 1
          op.will = { topic, qos, retain, payload: copy() }
        }
        break
      case WireOp.SubAdd:
        op.text = str()
        op.qos = u8()
        break
      case WireOp.SubRemove:
      case WireOp.RetainedDelete:
        op.text = str()
        break
      case WireOp.QueuePush:
        op.message = message()
        op.qos = u8()
        op.retain = u8() === 1
        break
      case WireOp.QueueRemove:
      case WireOp.RetainedSet:
        op.message = message()
        break
      case WireOp.InflightSet:
        op.packetId = u16()
        op.stage = u8()
        op.message = message()
        op.qos = u8()
        op.retain = u8() === 1
        break
      case WireOp.InflightClear:
      case WireOp.IncomingAdd:
      case WireOp.IncomingRemove:
        op.packetId = u16()
        break
      // session.delete: the client alone.
    }
    ops[i] = op
  }
  if (at !== data.length) throw new JournalWireError(`${data.length - at} bytes after the last op`)
  return { messages, ops }
}
