import { test, describe, before, after, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { startBroker, target, sleep, type RunningBroker } from '../helpers/broker'
import { RawClient, type RawPacket } from '../helpers/raw'
// ---------------------------------------------------------------------------
// Local helpers (test/helpers is shared and not ours to edit).
// ---------------------------------------------------------------------------

let seq = 0
/** A short id unique within this run: usable as client id (<= 23 chars) and topic level. */
const uid = (p: string) => `${p}${(++seq).toString(36)}${Math.random().toString(36).slice(2, 7)}`.slice(0, 23)

/** Opens a raw connection, closed when the test ends; with `connect` fields, also performs the handshake (rc 0 asserted). */
async function raw(t: TestContext, port: number, connect?: Partial<RawPacket>): Promise<RawClient> {
  const c = await RawClient.connect(port)
  t.after(() => c.destroy())
  if (connect) {
    const ack = await c.handshake(connect)
    assert.equal(ack.returnCode, 0, `CONNACK return code for ${connect.clientId}`)
  }
  return c
}

/** An MQTT.js 3.1.1 client, ended when the test ends. */
async function client(t: TestContext, url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...opts })
  t.after(() => c.endAsync(true))
  return c
}

/** The next packet, which must be `cmd`. */
async function expectPacket(c: RawClient, cmd: string, ms = 2000): Promise<RawPacket> {
  const p = await c.next(ms)
  assert.ok(p, `connection closed while waiting for ${cmd}`)
  assert.equal(p.cmd, cmd, `expected ${cmd}, got ${p.cmd} ${JSON.stringify(p)}`)
  return p
}

/** Asserts the broker closes the connection within `ms` without sending anything (first). */
async function expectClose(c: RawClient, ms = 2000, what = 'connection'): Promise<void> {
  let p: RawPacket | null
  try {
    p = await c.next(ms)
  } catch {
    assert.fail(`${what} still open after ${ms} ms`)
  }
  assert.equal(p, null, `expected ${what} to be closed, got ${p && p.cmd} ${JSON.stringify(p)}`)
}

/** Every packet received within `ms` (stops early if the connection closes). */
async function collect(c: RawClient, ms: number): Promise<RawPacket[]> {
  const out: RawPacket[] = []
  const end = Date.now() + ms
  for (;;) {
    const left = end - Date.now()
    if (left <= 0) return out
    let p: RawPacket | null
    try {
      p = await c.next(left)
    } catch {
      return out
    }
    if (!p) return out
    out.push(p)
  }
}

/** Asserts nothing arrives within `ms` (a close is reported as a failure too). */
async function expectSilence(c: RawClient, ms: number, what = 'packet'): Promise<void> {
  const got = await collect(c, ms)
  assert.deepEqual(got.map(describePacket), [], `expected no ${what} within ${ms} ms`)
  assert.ok(!c.socket.destroyed, 'connection closed unexpectedly')
}

/** Subscribes on a raw connection and waits for the SUBACK. */
async function subscribe(c: RawClient, topic: string, qos: 0 | 1 | 2, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
  const ack = await expectPacket(c, 'suback')
  assert.equal(ack.messageId, messageId)
  assert.deepEqual(ack.granted, [qos], `SUBACK for ${topic}`)
}

/** Waits until a raw client responds to PINGREQ: everything sent before it has been processed. */
async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' })
  await expectPacket(c, 'pingresp')
}

const describePacket = (p: RawPacket) =>
  p.cmd === 'publish' ? `publish ${p.topic} "${String(p.payload)}" qos${p.qos}` : p.cmd
const payloads = (ps: RawPacket[]) => ps.filter((p) => p.cmd === 'publish').map((p) => String(p.payload))

// --- byte-level packet building, for what mqtt-packet refuses to encode ----
function varint(n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
/** A length-prefixed string field from text or raw bytes. */
const field = (s: string | Buffer | number[]) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s)
  return Buffer.concat([u16(b.length), b])
}
const frame = (firstByte: number, body: Buffer) => Buffer.concat([Buffer.from([firstByte]), varint(body.length), body])

/** Raw PUBLISH bytes, for topics and flag combinations mqtt-packet will not produce. */
function publishPacket(topic: string | number[], payload: string, o: { qos?: number; dup?: boolean; retain?: boolean; id?: number } = {}): Buffer {
  const qos = o.qos ?? 0
  const first = 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 1 : 0)
  return frame(first, Buffer.concat([field(topic), qos > 0 ? u16(o.id ?? 1) : Buffer.alloc(0), Buffer.from(payload)]))
}

/** QoS 1 publish on a raw connection, waiting for the PUBACK. */
async function publish1(c: RawClient, topic: string, payload: string, messageId = 1, dup = false): Promise<void> {
  c.send({ cmd: 'publish', topic, payload, qos: 1, messageId, dup })
  const ack = await expectPacket(c, 'puback')
  assert.equal(ack.messageId, messageId)
}

/**
 * Sends `bad` on a fresh connection, asserts the broker closes that connection and does not forward
 * anything from it, and that a bystander subscriber and publisher keep working.
 */
async function closesOnlyOffender(t: TestContext, port: number, bad: Buffer | ((c: RawClient) => void), topic: string, what: string) {
  const by = uid('by/')
  const sub = await raw(t, port, { clientId: uid('bs') })
  await subscribe(sub, topic, 1)
  await subscribe(sub, by, 1, 2)
  const pub = await raw(t, port, { clientId: uid('bp') })
  const offender = await raw(t, port, { clientId: uid('bo') })
  if (typeof bad === 'function') bad(offender)
  else offender.sendBytes(bad)
  await expectClose(offender, 2000, `connection that sent ${what}`)
  await publish1(pub, by, 'still-working')
  const got = await collect(sub, 500)
  assert.deepEqual(got.map(describePacket), [`publish ${by} "still-working" qos1`], `the bystander after ${what}`)
}

describe('3.3 PUBLISH', () => {
  let b: RunningBroker
  before(async () => {
    b = await startBroker()
  })
  after(() => b.close())

  // ---- 3.3.1 fixed header --------------------------------------------------
  test('[MQTT-3.3.1-2] messages delivered at QoS 0 have DUP 0', async (t) => {
    const topic = uid('d0/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 0)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, topic, 'was-dup-qos1', 1, true) // a QoS 1 re-send with DUP=1, downgraded to QoS 0
    pub.send({ cmd: 'publish', topic, payload: 'qos0', qos: 0 })
    const got = await collect(sub, 500)
    assert.deepEqual(payloads(got), ['was-dup-qos1', 'qos0'])
    for (const p of got) {
      assert.equal(p.qos, 0)
      assert.equal(p.dup, false, `DUP of "${p.payload}"`)
    }
  })

  test('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated to subscribers', async (t) => {
    const topic = uid('dp/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, topic, 'q1-dup', 11, true)
    pub.send({ cmd: 'publish', topic, payload: 'q2-dup', qos: 2, messageId: 12, dup: true })
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 12)
    pub.send({ cmd: 'pubrel', messageId: 12 })
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 12)
    const got = await collect(sub, 500)
    assert.deepEqual(payloads(got), ['q1-dup', 'q2-dup'])
    for (const p of got) assert.equal(p.dup, false, `first transmission of "${p.payload}" must have DUP 0`)
  })

  test('[MQTT-3.3.1-4] a PUBLISH with both QoS bits set closes the connection and is not delivered', async (t) => {
    const topic = uid('q3/')
    await closesOnlyOffender(t, b.port, publishPacket(topic, 'qos3', { qos: 3, id: 1 }), topic, 'a QoS 3 PUBLISH')
  })

  // ---- 3.3.2 topic name ----------------------------------------------------
  test('[MQTT-3.3.2-1] the topic name is delivered exactly as published, multi-byte UTF-8 included', async (t) => {
    const topic = `${uid('tn')}/ü/€/\u{1D11E}/日本`
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 0)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, topic, 'utf8')
    const p = await expectPacket(sub, 'publish')
    assert.equal(p.topic, topic)
    assert.equal(String(p.payload), 'utf8')
  })

  test('[MQTT-3.3.2-2] a PUBLISH whose topic contains "+" closes the connection', async (t) => {
    const base = uid('wc')
    await closesOnlyOffender(t, b.port, publishPacket(`${base}/+`, 'plus', { qos: 1 }), `${base}/+`, 'a "+" topic')
    await closesOnlyOffender(t, b.port, publishPacket(`${base}/a+b`, 'plus', { qos: 0 }), `${base}/#`, 'a "a+b" topic')
  })

  test('[MQTT-3.3.2-2] a PUBLISH whose topic contains "#" closes the connection', async (t) => {
    const base = uid('wc')
    await closesOnlyOffender(t, b.port, publishPacket(`${base}/#`, 'hash', { qos: 1 }), `${base}/#`, 'a "#" topic')
    await closesOnlyOffender(t, b.port, publishPacket(`${base}/x#`, 'hash', { qos: 0 }), `${base}/#`, 'a "x#" topic')
  })

  // ---- 1.5.3 UTF-8 strings -------------------------------------------------
  test('[MQTT-1.5.3-1] a PUBLISH topic that is not well-formed UTF-8 closes the connection', async (t) => {
    const base = uid('u8')
    const bad = [...Buffer.from(base + '/'), 0xc3, 0x28] // truncated 2-byte sequence
    await closesOnlyOffender(t, b.port, publishPacket(bad, 'bad', { qos: 1 }), `${base}/#`, 'ill-formed UTF-8')
  })

  test('[MQTT-1.5.3-1] a PUBLISH topic containing an encoded surrogate (U+D800) closes the connection', async (t) => {
    const base = uid('u8')
    const bad = [...Buffer.from(base + '/'), 0xed, 0xa0, 0x80]
    await closesOnlyOffender(t, b.port, publishPacket(bad, 'bad', { qos: 1 }), `${base}/#`, 'a UTF-16 surrogate')
  })

  test('[MQTT-1.5.3-2] a PUBLISH topic containing U+0000 closes the connection', async (t) => {
    const base = uid('u8')
    const bad = [...Buffer.from(base + '/a'), 0x00, 0x62]
    await closesOnlyOffender(t, b.port, publishPacket(bad, 'nul', { qos: 1 }), `${base}/#`, 'U+0000')
  })

  test('[MQTT-1.5.3-3] a leading 0xEF 0xBB 0xBF (U+FEFF) in a topic is kept, not stripped', async (t) => {
    const plain = uid('bom') + '/x'
    const withBom = '\uFEFF' + plain
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, withBom, 1)
    const other = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(other, plain, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    pub.sendBytes(publishPacket([0xef, 0xbb, 0xbf, ...Buffer.from(plain)], 'bom', { qos: 1, id: 3 }))
    assert.equal((await expectPacket(pub, 'puback')).messageId, 3)
    const p = await expectPacket(sub, 'publish')
    assert.equal(p.topic, withBom)
    assert.deepEqual([...Buffer.from(p.topic).subarray(0, 3)], [0xef, 0xbb, 0xbf])
    await expectSilence(other, 300, 'delivery to the topic without U+FEFF')
  })

  // ---- 3.3.4 response ------------------------------------------------------
  test('[MQTT-3.3.4-1] a QoS 0 PUBLISH gets no response', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('r0') })
    c.send({ cmd: 'publish', topic: uid('r0/'), payload: 'x', qos: 0 })
    await expectSilence(c, 400, 'response to QoS 0')
  })

  test('[MQTT-3.3.4-1] a QoS 1 PUBLISH is answered with PUBACK carrying its packet identifier', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('r1') })
    for (const id of [1, 0x1234, 0xffff]) {
      c.send({ cmd: 'publish', topic: uid('r1/'), payload: 'x', qos: 1, messageId: id })
      const ack = await expectPacket(c, 'puback')
      assert.equal(ack.messageId, id)
    }
    await expectSilence(c, 300)
  })

  test('[MQTT-3.3.4-1] a QoS 2 PUBLISH is answered with PUBREC carrying its packet identifier', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('r2') })
    for (const id of [2, 0xabcd]) {
      c.send({ cmd: 'publish', topic: uid('r2/'), payload: 'x', qos: 2, messageId: id })
      assert.equal((await expectPacket(c, 'pubrec')).messageId, id)
      c.send({ cmd: 'pubrel', messageId: id })
      assert.equal((await expectPacket(c, 'pubcomp')).messageId, id)
    }
  })

  // ---- 3.3.5 actions -------------------------------------------------------
  test('[MQTT-3.3.5-1] with overlapping subscriptions the message is delivered at the highest matching QoS', async (t) => {
    const base = uid('ov')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, `${base}/+`, 0, 1)
    await subscribe(sub, `${base}/#`, 1, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    pub.send({ cmd: 'publish', topic: `${base}/x`, payload: 'q2', qos: 2, messageId: 5 })
    await expectPacket(pub, 'pubrec')
    pub.send({ cmd: 'pubrel', messageId: 5 })
    await expectPacket(pub, 'pubcomp')
    const got = (await collect(sub, 500)).filter((p) => p.cmd === 'publish')
    assert.ok(got.length >= 1, 'the message was not delivered')
    assert.deepEqual([...new Set(payloads(got))], ['q2'])
    const maxQos = Math.max(...got.map((p) => p.qos))
    assert.equal(maxQos, 1, `QoS of the copies: ${got.map((p) => p.qos)} (max of the matching subscriptions is 1)`)
  })
})

describe('[fbroker] malformed, oversized and over-limit packets close only the offending connection', () => {
  let b: RunningBroker
  before(async () => {
    b = await startBroker()
  })
  after(() => b.close())

  test('[fbroker] a remaining length encoded in 5 bytes closes the connection; other clients keep working', async (t) => {
    const topic = uid('rl/')
    await closesOnlyOffender(t, b.port, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, 0x61]), topic, 'a 5-byte remaining length')
  })

  test('[fbroker] a malformed PUBLISH (topic length past the end of the packet) closes the connection', async (t) => {
    const topic = uid('mf/')
    const bytes = frame(0x30, Buffer.concat([u16(200), Buffer.from(topic)]))
    await closesOnlyOffender(t, b.port, bytes, topic, 'a truncated topic')
  })

  test('[fbroker] a QoS 1 PUBLISH too short to hold its packet identifier closes the connection', async (t) => {
    const topic = uid('mf/')
    const bytes = frame(0x32, Buffer.concat([field(topic), Buffer.from([0x01])]))
    await closesOnlyOffender(t, b.port, bytes, topic, 'a PUBLISH without a whole packet id')
  })

  test('[fbroker] a packet larger than maxPacketSize (1024) closes the connection; other clients keep working', async (t) => {
    const s = await startBroker({ maxPacketSize: 1024 })
    t.after(() => s.close())
    const topic = uid('big/')
    // Just under the limit is fine.
    const ok = await raw(t, s.port, { clientId: uid('ok') })
    await publish1(ok, topic, 'x'.repeat(900))
    await closesOnlyOffender(t, s.port, (c) => c.send({ cmd: 'publish', topic, payload: Buffer.alloc(2000, 0x61), qos: 1, messageId: 1 }), topic, 'a 2000-byte payload')
  })

  test('[fbroker] a PUBLISH topic with more levels than maxTopicLevels closes the connection', { skip: target === 'mosquitto' && 'needs fbroker maxTopicLevels' }, async (t) => {
    const s = await startBroker({ maxTopicLevels: 4 })
    t.after(() => s.close())
    const base = uid('lv')
    const ok = await raw(t, s.port, { clientId: uid('ok') })
    await publish1(ok, `${base}/b/c/d`, 'four levels')
    await closesOnlyOffender(t, s.port, publishPacket(`${base}/b/c/d/e`, 'five', { qos: 1 }), `${base}/#`, 'a 5-level topic')
  })
})
