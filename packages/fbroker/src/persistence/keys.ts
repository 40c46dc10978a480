/**
 * The Redis key layout of the persistence backend (docs/persistence.md).
 *
 * With prefix P (default `fbroker:`), client id C (with `%`, `{` and `}`
 * percent-encoded, so the hash tag is exactly the client id) and group tag T:
 *
 *   P c:{C}:s        hash    the session record
 *   P c:{C}:subs     hash    filter → granted QoS
 *   P c:{C}:q        list    queued deliveries, oldest first: "qos:retain:bytes:messageId"
 *   P c:{C}:inf      hash    packet id → "seq:stage:retain:messageId" (stage a/r/c)
 *   P c:{C}:in       set     inbound QoS 2 packet ids awaiting PUBREL
 *   P c:{C}:meta     hash    qb (queued payload bytes), seq (in-flight order counter)
 *   P m:{T}:bodies   hash    message id → body (metadata and payload), shared by the group's queues and in-flight entries
 *   P m:{T}:refs     hash    message id → how many queue and in-flight entries reference the body
 *   P g:{T}:sessions set     client ids of the group's sessions (load)
 *   P g:{T}:expiry   zset    client id → expiresAt (expire)
 *   P g:{T}:batch:<writer>  hash  last batch applied by one backend instance (retry protection; expires)
 *   P groups         set     group tags in use
 *   P r:{r}:t:<topic> hash   a retained message: id, p, q, pub, ts
 *   P r:{r}:idx      zset    every retained topic, score 0 (lexicographic index)
 *
 * A group is the unit of atomicity: one Lua script applies all ops of the
 * group's clients in a batch. With a single Redis (or Sentinel) there is one
 * group, `all`. On a Redis Cluster there is one group per hash slot: T is a
 * short string chosen so that `{T}` hashes to the same slot as `{C}`, so a
 * client's keys, its message bodies and its group's indexes share a slot.
 */

/** CRC16-XMODEM, Redis Cluster's key hash (`CRC16(key) mod 16384`). */
export function crc16(data: Buffer): number {
  let crc = 0
  for (const byte of data) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** The Redis Cluster hash slot of a key (honouring `{hash tags}`). */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  if (open >= 0) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) key = key.slice(open + 1, close)
  }
  return crc16(Buffer.from(key, 'utf8')) & 0x3fff
}

let slotTags: string[] | undefined

/** A short string whose hash slot is `slot` (computed once for all 16384 slots, in a few milliseconds). */
export function slotTag(slot: number): string {
  if (slotTags === undefined) {
    const tags = new Array<string>(16384)
    let missing = 16384
    for (let i = 0; missing > 0; i++) {
      const tag = i.toString(36)
      const s = crc16(Buffer.from(tag, 'latin1')) & 0x3fff
      if (tags[s] === undefined) {
        tags[s] = tag
        missing--
      }
    }
    slotTags = tags
  }
  return slotTags[slot]!
}

/** Percent-encodes `%`, `{` and `}` so an id can sit inside a hash tag and keys stay distinct. */
export function encodeId(id: string): string {
  return id.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
}

/** The key names of one keyspace (a prefix) in one mode. */
export class KeyLayout {
  readonly prefix: string
  /** One group per hash slot (Redis Cluster) or a single group. */
  readonly slotGroups: boolean

  constructor(prefix: string, slotGroups: boolean) {
    if (prefix.includes('{') || prefix.includes('}')) throw new RangeError(`prefix must not contain '{' or '}', got ${JSON.stringify(prefix)}`)
    this.prefix = prefix
    this.slotGroups = slotGroups
  }

  /** Common start of every key of a client: `P c:{C}:`. */
  clientBase(clientId: string): string {
    return `${this.prefix}c:{${encodeId(clientId)}}:`
  }

  /** Start of the client keys (`P c:`), for the expiry script, which builds `{C}:` itself. */
  get clientPrefix(): string {
    return `${this.prefix}c:`
  }

  /** The group a client belongs to. */
  groupOf(clientId: string): string {
    return this.slotGroups ? slotTag(crc16(Buffer.from(encodeId(clientId), 'utf8')) & 0x3fff) : 'all'
  }

  /** The message bodies of a group: `P m:{T}:bodies`. */
  groupBodies(group: string): string {
    return `${this.prefix}m:{${group}}:bodies`
  }

  /** The reference counts of a group's message bodies: `P m:{T}:refs`. */
  groupRefs(group: string): string {
    return `${this.prefix}m:{${group}}:refs`
  }

  groupSessions(group: string): string {
    return `${this.prefix}g:{${group}}:sessions`
  }

  groupExpiry(group: string): string {
    return `${this.prefix}g:{${group}}:expiry`
  }

  groupBatch(group: string, writer: string): string {
    return `${this.prefix}g:{${group}}:batch:${writer}`
  }

  get groups(): string {
    return `${this.prefix}groups`
  }

  /** Start of the retained message keys: `P r:{r}:t:`. */
  get retainedPrefix(): string {
    return `${this.prefix}r:{r}:t:`
  }

  get retainedIndex(): string {
    return `${this.prefix}r:{r}:idx`
  }
}
