// MQTT 3.1.1 conformance: retained messages (3.3.1.3, statements
// MQTT-3.3.1-5 to MQTT-3.3.1-12).
//
// Every test is named after the normative statement it checks; `[fbroker]`
// marks requirements of our issue that the standard leaves open.
import { after, afterEach, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { startBroker, target, type RunningBroker } from '../helpers/broker'
import { RawClient, type RawPacket } from '../helpers/raw'

// ---------------------------------------------------------------- helpers

const uid = () => Math.random().toString(16).slice(2, 10)

/** A whole packet from its first byte and body parts (Remaining Length computed here). */
function frame(first: number, ...parts: Array<Buffer | number[]>): Buffer {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))))
  const len: number[] = []
  let n = body.length
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    len.push(byte)
  } while (n > 0)
  return Buffer.concat([Buffer.from([first, ...len]), body])
}
/** A length-prefixed MQTT string; a Buffer is taken as already encoded (for ill-formed UTF-8). */
function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
/** SUBSCRIBE bytes; `flags` is the low nibble of the first byte (0b0010 when well formed). */
function subscribeBytes(id: number, subs: Array<[string | Buffer, number]>, flags = 0x2): Buffer {
  return frame(0x80 | flags, u16(id), ...subs.flatMap(([t, opts]) => [str(t), [opts]]))
}
function unsubscribeBytes(id: number, filters: Array<string | Buffer>, flags = 0x2): Buffer {
  return frame(0xa0 | flags, u16(id), ...filters.map((f) => str(f)))
}

/** Resolves when `raw` is closed before it sends any packet; fails on a reply or after `ms`. */
async function expectClosedWithoutReply(raw: RawClient, what: string, ms = 2000): Promise<void> {
  let p: RawPacket | null | 'timeout'
  try {
    p = await raw.next(ms)
  } catch {
    p = 'timeout'
  }
  assert.equal(
    p === null ? null : p === 'timeout' ? 'connection still open' : `received ${p.cmd}`,
    null,
    `${what}: expected the broker to close the connection without replying`,
  )
}

async function rawSession(port: number): Promise<RawClient> {
  const raw = await RawClient.connect(port)
  opened.push(raw)
  const ack = await raw.handshake({ clientId: 'raw-' + uid() })
  assert.equal(ack.returnCode, 0)
  return raw
}

const opened: Array<{ destroy(): void }> = []
function closeAll() {
  for (const c of opened.splice(0)) c.destroy()
}

/**
 * An MQTT 3.1.1 client over RawClient. It answers the broker's QoS 1/2 PUBLISH
 * flows itself, keeps every received PUBLISH in `inbox` and every other packet
 * for `response()`.
 */
class Peer {
  readonly inbox: RawPacket[] = []
  private others: RawPacket[] = []
  private waiters: Array<() => void> = []
  private lastId = 0
  closed = false
  private constructor(readonly raw: RawClient) {}

  static async open(port: number, connect: Partial<RawPacket> = {}): Promise<Peer> {
    const raw = await RawClient.connect(port)
    const peer = new Peer(raw)
    opened.push(peer)
    const ack = await raw.handshake({ clientId: 'p-' + uid(), ...connect })
    assert.equal(ack.returnCode, 0, 'CONNACK return code')
    void peer.pump()
    return peer
  }

  private async pump() {
    for (;;) {
      let p: RawPacket | null
      try {
        p = await this.raw.next(1000)
      } catch {
        continue
      }
      if (!p) break
      if (p.cmd === 'publish') {
        if (p.qos === 1) this.raw.send({ cmd: 'puback', messageId: p.messageId })
        if (p.qos === 2) this.raw.send({ cmd: 'pubrec', messageId: p.messageId })
        this.inbox.push(p)
      } else if (p.cmd === 'pubrel') {
        this.raw.send({ cmd: 'pubcomp', messageId: p.messageId })
      } else {
        this.others.push(p)
      }
      for (const w of this.waiters.splice(0)) w()
    }
    this.closed = true
    for (const w of this.waiters.splice(0)) w()
  }

  private async until<T>(what: string, get: () => T | undefined, ms: number): Promise<T> {
    const deadline = Date.now() + ms
    for (;;) {
      const v = get()
      if (v !== undefined) return v
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  nextId(): number {
    this.lastId = (this.lastId % 0xffff) + 1
    return this.lastId
  }

  /** The next non-PUBLISH packet of type `cmd` (and packet id `id`, if given). */
  response(cmd: string, id?: number, ms = 2000): Promise<RawPacket> {
    return this.until(
      id === undefined ? cmd : `${cmd} ${id}`,
      () => {
        const i = this.others.findIndex((p) => p.cmd === cmd && (id === undefined || p.messageId === id))
        return i < 0 ? undefined : this.others.splice(i, 1)[0]
      },
      ms,
    )
  }

  /** Subscribes and returns the SUBACK return codes. */
  async subscribe(subs: Array<[string, number]>): Promise<number[]> {
    const messageId = this.nextId()
    this.raw.send({ cmd: 'subscribe', messageId, subscriptions: subs.map(([topic, qos]) => ({ topic, qos })) })
    return (await this.response('suback', messageId)).granted
  }

  async unsubscribe(filters: string[]): Promise<void> {
    const messageId = this.nextId()
    this.raw.send({ cmd: 'unsubscribe', messageId, unsubscriptions: filters })
    await this.response('unsuback', messageId)
  }

  /** Publishes and waits for the QoS 1/2 flow to finish. */
  async publish(topic: string, payload: string | Buffer = '', opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}) {
    const qos = opts.qos ?? 0
    const messageId = qos > 0 ? this.nextId() : undefined
    this.raw.send({ cmd: 'publish', topic, payload, qos, retain: !!opts.retain, dup: false, messageId })
    if (qos === 1) await this.response('puback', messageId)
    if (qos === 2) {
      await this.response('pubrec', messageId)
      this.raw.send({ cmd: 'pubrel', messageId })
      await this.response('pubcomp', messageId)
    }
  }

  /** Waits for `n` PUBLISH packets and removes them from the inbox. */
  async take(n: number, ms = 2000): Promise<RawPacket[]> {
    await this.until(`${n} PUBLISH packet(s) (have ${this.inbox.length})`, () => (this.inbox.length >= n ? true : undefined), ms)
    return this.inbox.splice(0, n)
  }

  /** Waits for a PUBLISH on `topic`; returns (and removes) everything received before it. */
  async drainUntil(topic: string, ms = 2000): Promise<RawPacket[]> {
    const i = await this.until(
      `PUBLISH on ${topic}`,
      () => {
        const k = this.inbox.findIndex((p) => p.topic === topic)
        return k < 0 ? undefined : k
      },
      ms,
    )
    const before = this.inbox.splice(0, i + 1)
    before.pop()
    return before
  }

  async ping(): Promise<void> {
    this.raw.send({ cmd: 'pingreq' })
    await this.response('pingresp')
  }

  destroy(): void {
    this.raw.destroy()
  }
}

const texts = (ps: RawPacket[]) => ps.map((p) => p.payload.toString())
const topics = (ps: RawPacket[]) => ps.map((p) => p.topic)


/**
 * What a new subscription to `filter` is sent on arrival: subscribes, then
 * subscribes to a marker topic holding a retained message of its own, and
 * returns every PUBLISH received before the marker's.
 */
async function retainedFor(port: number, filter: string, qos: 0 | 1 | 2 = 1): Promise<RawPacket[]> {
  const end = `zz-ret-end/${uid()}`
  const pub = await Peer.open(port)
  await pub.publish(end, 'end', { qos: 1, retain: true })
  const sub = await Peer.open(port)
  try {
    await sub.subscribe([[filter, qos]])
    await sub.subscribe([[end, 0]])
    return await sub.drainUntil(end)
  } finally {
    await pub.publish(end, '', { qos: 1, retain: true })
    sub.destroy()
    pub.destroy()
  }
}

const summary = (ps: RawPacket[]) =>
  ps.map((p) => ({ topic: p.topic, payload: p.payload.toString(), qos: p.qos, retain: p.retain })).sort((x, y) => (x.topic < y.topic ? -1 : x.topic > y.topic ? 1 : 0))

// ------------------------------------------------------------------ tests

describe('MQTT 3.1.1 §3.3.1.3: retained messages', () => {
  let b: RunningBroker
  before(async () => {
    b = await startBroker()
  })
  after(async () => {
    closeAll()
    await b?.close()
  })
  afterEach(closeAll)

  test('[MQTT-3.3.1-5] a retained message is stored with its QoS and delivered to a later subscriber, after its publisher has gone', async () => {
    const base = `ret5/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/q0`, 'zero', { qos: 0, retain: true })
    await pub.publish(`${base}/q1`, 'one', { qos: 1, retain: true })
    await pub.publish(`${base}/q2`, 'two', { qos: 2, retain: true })
    await pub.ping()
    pub.destroy()
    assert.deepEqual(summary(await retainedFor(b.port, `${base}/+`, 2)), [
      { topic: `${base}/q0`, payload: 'zero', qos: 0, retain: true },
      { topic: `${base}/q1`, payload: 'one', qos: 1, retain: true },
      { topic: `${base}/q2`, payload: 'two', qos: 2, retain: true },
    ])
  })

  test('[MQTT-3.3.1-5] a new retained message on a topic replaces the stored one', async () => {
    const t = `ret5r/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'first', { qos: 1, retain: true })
    await pub.publish(t, 'second', { qos: 2, retain: true })
    assert.deepEqual(summary(await retainedFor(b.port, t, 2)), [{ topic: t, payload: 'second', qos: 2, retain: true }])
  })

  test('[MQTT-3.8.4-6] a retained message is sent at the minimum of its stored QoS and the granted QoS', async () => {
    const base = `ret-minqos/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/q2`, 'two', { qos: 2, retain: true })
    await pub.publish(`${base}/q1`, 'one', { qos: 1, retain: true })
    for (const granted of [0, 1] as const) {
      const got = summary(await retainedFor(b.port, `${base}/+`, granted))
      assert.deepEqual(
        got.map((m) => [m.topic, m.qos]),
        [
          [`${base}/q1`, Math.min(1, granted)],
          [`${base}/q2`, granted],
        ],
        `subscription granted QoS ${granted}`,
      )
    }
  })

  test('[MQTT-3.3.1-6] a new subscription is sent the last retained message of every matching topic, wildcards included', async () => {
    const base = `ret6/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(base, 'parent', { qos: 1, retain: true })
    await pub.publish(`${base}/a`, 'a1', { qos: 1, retain: true })
    await pub.publish(`${base}/a`, 'a2', { qos: 1, retain: true })
    await pub.publish(`${base}/b`, 'b1', { qos: 0, retain: true })
    await pub.publish(`${base}/c/d`, 'cd', { qos: 2, retain: true })
    await pub.publish(`${base}x/a`, 'elsewhere', { qos: 1, retain: true })
    await pub.publish(`${base}/n`, 'not retained', { qos: 1 })
    await pub.ping()
    const payloads = async (filter: string) => texts(await retainedFor(b.port, filter)).sort()
    assert.deepEqual(await payloads(`${base}/a`), ['a2'])
    assert.deepEqual(await payloads(`${base}/+`), ['a2', 'b1'])
    assert.deepEqual(await payloads(`${base}/#`), ['a2', 'b1', 'cd', 'parent'])
    assert.deepEqual(await payloads(`${base}/+/d`), ['cd'])
    assert.deepEqual(await payloads(`${base}/zzz`), [])
  })

  test('[MQTT-3.3.1-7] a retained QoS 0 message discards the previously retained message and is stored in its place', async () => {
    const t = `ret7/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'old', { qos: 1, retain: true })
    await pub.publish(t, 'new', { qos: 0, retain: true })
    await pub.ping()
    // fbroker keeps retained QoS 0 messages (the standard says SHOULD)
    assert.deepEqual(summary(await retainedFor(b.port, t, 2)), [{ topic: t, payload: 'new', qos: 0, retain: true }])
  })

  test('[MQTT-3.3.1-8] a message sent because of a new subscription has RETAIN=1, whatever the subscription QoS', async () => {
    const t = `ret8/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'kept', { qos: 2, retain: true })
    for (const qos of [0, 1, 2] as const) {
      const got = await retainedFor(b.port, t, qos)
      assert.equal(got.length, 1)
      assert.equal(got[0].retain, true, `subscription QoS ${qos}`)
    }
  })

  test('[MQTT-3.3.1-9] a message forwarded to an established subscription has RETAIN=0, even when published with RETAIN=1', async () => {
    const t = `ret9/${uid()}`
    const sub = await Peer.open(b.port)
    const pub = await Peer.open(b.port)
    await sub.subscribe([[t, 2]])
    for (const qos of [0, 1, 2] as const) await pub.publish(t, `r${qos}`, { qos, retain: true })
    await pub.publish(t, 'plain', { qos: 1 })
    const got = await sub.take(4)
    assert.deepEqual(
      got.map((p) => [p.payload.toString(), p.retain]),
      [
        ['r0', false],
        ['r1', false],
        ['r2', false],
        ['plain', false],
      ],
    )
    await pub.publish(t, '', { qos: 1, retain: true })
  })

  test('[MQTT-3.3.1-10] a zero-length retained PUBLISH reaches current subscribers and removes the retained message', async () => {
    const t = `ret10/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'old', { qos: 1, retain: true })
    const sub = await Peer.open(b.port)
    await sub.subscribe([[t, 1]])
    assert.deepEqual(texts(await sub.take(1)), ['old'])
    await pub.publish(t, '', { qos: 1, retain: true })
    const [empty] = await sub.take(1)
    assert.equal(empty.topic, t)
    assert.equal(empty.payload.length, 0, 'processed as a normal message, delivered with its empty payload')
    assert.equal(empty.retain, false)
    assert.deepEqual(await retainedFor(b.port, t), [], 'no retained message for a later subscriber')
    assert.deepEqual(await retainedFor(b.port, `${t.split('/')[0]}/+`), [], 'nor for a wildcard one')
  })

  test('[MQTT-3.3.1-11] a zero-length retained message is never stored as a retained message', async () => {
    const base = `ret11/${uid()}`
    const pub = await Peer.open(b.port)
    for (const qos of [0, 1, 2] as const) await pub.publish(`${base}/q${qos}`, '', { qos, retain: true })
    await pub.ping()
    assert.deepEqual(await retainedFor(b.port, `${base}/#`), [])
  })

  test('[MQTT-3.3.1-12] a PUBLISH with RETAIN=0 neither stores a message nor removes or replaces the retained one', async () => {
    const base = `ret12/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/kept`, 'retained', { qos: 1, retain: true })
    for (const qos of [0, 1, 2] as const) {
      await pub.publish(`${base}/kept`, `plain${qos}`, { qos })
      await pub.publish(`${base}/never`, `plain${qos}`, { qos })
    }
    await pub.publish(`${base}/kept`, '', { qos: 1 }) // zero-length but not retained: no deletion either
    await pub.ping()
    assert.deepEqual(summary(await retainedFor(b.port, `${base}/#`)), [{ topic: `${base}/kept`, payload: 'retained', qos: 1, retain: true }])
  })

  test(
    '[fbroker] Broker.publish with retain stores a retained message for later subscribers',
    { skip: target === 'mosquitto' && 'fbroker API (Broker.publish)' },
    async () => {
      const t = `ret-api/${uid()}`
      await b.broker.publish(t, Buffer.from('from the broker'), { qos: 1, retain: true })
      assert.deepEqual(summary(await retainedFor(b.port, t)), [{ topic: t, payload: 'from the broker', qos: 1, retain: true }])
      await b.broker.publish(t, Buffer.alloc(0), { qos: 0, retain: true })
      assert.deepEqual(await retainedFor(b.port, t), [])
    },
  )
})
