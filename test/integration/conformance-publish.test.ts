// MQTT 3.1.1 conformance, part 1: PUBLISH (3.3), UTF-8 strings (1.5.3), and packets that must close only
// the offending connection. Run against Mosquitto with FBROKER_TEST_TARGET=mosquitto; see test/CONFORMANCE.md.
import { test, describe, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, startBroker, target } from '../helpers/broker'
import type { RawClient } from '../helpers/raw'
import { publish1, raw, subscribe, uid } from '../helpers/clients'
import { collect, expectClose, expectPacket, expectSilence } from '../helpers/expect'
import { describePacket, field, frame, payloads, publishPacket, u16 } from '../helpers/packets'

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
  const b = brokerForSuite()

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

  test('[MQTT-3.3.2-3] a message delivered through a wildcard subscription carries the published topic name, which matches the filter', async (t) => {
    const base = uid('mt')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, `${base}/+/c/#`, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, `${base}/b/c/d/e`, 'deep', 1)
    await publish1(pub, `${base}/x/c`, 'parent', 2)
    await publish1(pub, `${base}/b/x/d`, 'no-match', 3)
    const got = await collect(sub, 400)
    assert.deepEqual(got.map((p) => [p.topic, String(p.payload)]), [
      [`${base}/b/c/d/e`, 'deep'],
      [`${base}/x/c`, 'parent'],
    ])
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
  test('[MQTT-3.3.5-1] with overlapping subscriptions the message is delivered at the highest matching QoS', { skip: target === 'mosquitto' && 'Mosquitto 2.0 sends one copy at the QoS of whichever matching subscription its tree walk finds, not the highest' }, async (t) => {
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
  const b = brokerForSuite()

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
