// Byte-level MQTT 3.1.1 packet building, for what mqtt-packet refuses to
// encode (bad flags, ill-formed UTF-8, truncated fields...), and small views
// of the packets a RawClient receives.
import type { RawPacket } from './raw'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mqttPacket = require('mqtt-packet')

// ---- encoding -------------------------------------------------------------

/** The variable-length integer of a Remaining Length. */
export function varint(n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}

/** A two-byte big-endian integer (packet identifiers, lengths). */
export const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])

/** A length-prefixed MQTT string from text, or from raw bytes taken as already encoded (for ill-formed UTF-8). */
export function field(s: string | Buffer | number[]): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s)
  return Buffer.concat([u16(b.length), b])
}

/** A whole packet from its first byte and body parts (Remaining Length computed here). */
export function frame(first: number, ...parts: Array<Buffer | number[]>): Buffer {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))))
  return Buffer.concat([Buffer.from([first]), varint(body.length), body])
}

/** Encodes a packet object (mqtt-packet's format) as MQTT 3.1.1. */
export const encode = (p: RawPacket) => mqttPacket.generate(p, { protocolVersion: 4 }) as Buffer

/** CONNECT flag bits. */
export const CONNECT_FLAGS = { user: 0x80, pass: 0x40, willRetain: 0x20, willQos1: 0x08, willQos2: 0x10, will: 0x04, clean: 0x02, reserved: 0x01 }

/** A CONNECT packet from its parts, so that any flag combination can be sent. */
export function connectPacket(o: { name?: string; level?: number; flags: number; keepalive?: number; payload: Buffer[]; header?: number }): Buffer {
  const body = Buffer.concat([field(o.name ?? 'MQTT'), Buffer.from([o.level ?? 4, o.flags]), u16(o.keepalive ?? 0), ...o.payload])
  return frame(o.header ?? 0x10, body)
}

/** A well-formed CONNECT (clean session, keep-alive 0) encoded by mqtt-packet, with `extra` fields. */
export const connectBytes = (clientId: string, extra: Partial<RawPacket> = {}) =>
  encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId, ...extra })

/** Raw PUBLISH bytes, for topics and flag combinations mqtt-packet will not produce. */
export function publishPacket(topic: string | number[], payload: string, o: { qos?: number; dup?: boolean; retain?: boolean; id?: number } = {}): Buffer {
  const qos = o.qos ?? 0
  const first = 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 1 : 0)
  return frame(first, Buffer.concat([field(topic), qos > 0 ? u16(o.id ?? 1) : Buffer.alloc(0), Buffer.from(payload)]))
}

/** SUBSCRIBE bytes; `flags` is the low nibble of the first byte (0b0010 when well formed). */
export function subscribeBytes(id: number, subs: Array<[string | Buffer, number]>, flags = 0x2): Buffer {
  return frame(0x80 | flags, u16(id), ...subs.flatMap(([t, opts]) => [field(t), [opts]]))
}

/** UNSUBSCRIBE bytes; `flags` is the low nibble of the first byte (0b0010 when well formed). */
export function unsubscribeBytes(id: number, filters: Array<string | Buffer>, flags = 0x2): Buffer {
  return frame(0xa0 | flags, u16(id), ...filters.map((f) => field(f)))
}

// ---- views of received packets -----------------------------------------------

/** A one-line description, for assertion messages. */
export const describePacket = (p: RawPacket) =>
  p.cmd === 'publish' ? `publish ${p.topic} "${String(p.payload)}" qos${p.qos}` : p.cmd

/** The payloads of the PUBLISH packets among `ps`, as text. */
export const payloads = (ps: RawPacket[]) => ps.filter((p) => p.cmd === 'publish').map((p) => String(p.payload))

/** The payloads of `ps` (all PUBLISH packets), as text. */
export const texts = (ps: RawPacket[]) => ps.map((p) => p.payload.toString())

/** The topic names of `ps` (all PUBLISH packets). */
export const topics = (ps: RawPacket[]) => ps.map((p) => p.topic)
