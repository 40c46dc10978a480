// MQTT 3.1.1 conformance, part 1: QoS flows and acknowledgements (3.4-3.7, 2.3.1, 4.3), delivery retry (4.4)
// and ordering (4.6). Run against Mosquitto with FBROKER_TEST_TARGET=mosquitto; see test/CONFORMANCE.md.
import { test, describe, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, startBroker, target } from '../helpers/broker'
import type { RawPacket } from '../helpers/raw'
import { leave, mqttClient, ping, publish1, publish2, raw, resume, subscribe, uid } from '../helpers/clients'
import { collect, expectClose, expectPacket, expectSilence } from '../helpers/expect'
import { field, frame, payloads, u16 } from '../helpers/packets'
import { sleep, waitUntil } from '../helpers/wait'

describe('4.3 QoS delivery protocols and 3.4-3.7 acknowledgements', () => {
  const b = brokerForSuite()

  test('[MQTT-4.3.1-1] [MQTT-2.3.1-5] the server sends QoS 0 messages with QoS 0, DUP 0 and no packet identifier', async (t) => {
    const topic = uid('q0/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    pub.send({ cmd: 'publish', topic, payload: 'exact-payload', qos: 0 })
    const p = await expectPacket(sub, 'publish')
    assert.equal(p.qos, 0)
    assert.equal(p.dup, false)
    assert.equal(p.messageId, undefined)
    // A packet identifier in a QoS 0 PUBLISH would show up as 2 extra payload bytes.
    assert.equal(String(p.payload), 'exact-payload')
  })

  test('[MQTT-4.3.2-1] the server sends a QoS 1 message with QoS 1, DUP 0 and a non-zero packet identifier', async (t) => {
    const topic = uid('q1/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, topic, 'one')
    const p = await expectPacket(sub, 'publish')
    assert.equal(p.qos, 1)
    assert.equal(p.dup, false)
    assert.ok(Number.isInteger(p.messageId) && p.messageId > 0, `packet id ${p.messageId}`)
    sub.send({ cmd: 'puback', messageId: p.messageId })
    await expectSilence(sub, 300)
  })

  test('[MQTT-2.3.1-4] [MQTT-2.3.1-1] packet identifiers of the server\'s in-flight QoS 1 and 2 messages are non-zero and distinct', async (t) => {
    const topic = uid('id/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    for (let i = 1; i <= 6; i++) {
      await publish1(pub, topic, `a${i}`, i)
      await publish2(pub, topic, `b${i}`, 100 + i)
    }
    const got = (await collect(sub, 600)).filter((p) => p.cmd === 'publish')
    assert.equal(got.length, 12, 'all 12 messages in flight (none acknowledged)')
    const ids = got.map((p) => p.messageId)
    for (const id of ids) assert.ok(Number.isInteger(id) && id > 0 && id <= 0xffff, `packet id ${id}`)
    assert.equal(new Set(ids).size, ids.length, `packet ids reused while in flight: ${ids}`)
  })

  test('[MQTT-4.3.2-2] the server PUBACKs with the PUBLISH\'s id, then treats that id as a new message', async (t) => {
    const topic = uid('r1/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish1(pub, topic, 'first', 0x4242)
    // Same packet id again, even flagged DUP: after the PUBACK it is a new publication.
    await publish1(pub, topic, 'second', 0x4242, true)
    const got = await collect(sub, 500)
    assert.deepEqual(payloads(got), ['first', 'second'])
  })

  test('[MQTT-4.3.3-1] [MQTT-2.3.1-6] the server sends QoS 2 as PUBLISH (QoS 2, DUP 0), then PUBREL with the same id on PUBREC', async (t) => {
    const topic = uid('s2/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish2(pub, topic, 'two')
    const p = await expectPacket(sub, 'publish')
    assert.equal(p.qos, 2)
    assert.equal(p.dup, false)
    assert.ok(p.messageId > 0)
    // Until PUBREC the message is unacknowledged: no PUBREL yet.
    await expectSilence(sub, 300, 'packet before PUBREC')
    sub.send({ cmd: 'pubrec', messageId: p.messageId })
    const rel = await expectPacket(sub, 'pubrel')
    assert.equal(rel.messageId, p.messageId)
    sub.send({ cmd: 'pubcomp', messageId: p.messageId })
    await expectSilence(sub, 300, 'packet after PUBCOMP')
  })

  test('[MQTT-4.3.3-2] exactly once: a re-sent QoS 2 PUBLISH (DUP, same id) before PUBREL gets PUBREC and is not delivered twice', async (t) => {
    const topic = uid('x2/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    pub.send({ cmd: 'publish', topic, payload: 'once', qos: 2, messageId: 10 })
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 10)
    pub.send({ cmd: 'publish', topic, payload: 'once', qos: 2, messageId: 10, dup: true })
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 10, 'the re-sent PUBLISH is acknowledged with PUBREC')
    pub.send({ cmd: 'pubrel', messageId: 10 })
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 10)
    const got = (await collect(sub, 500)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(got), ['once'], 'delivered exactly once')
  })

  test('[MQTT-4.3.3-2] every re-send of a QoS 2 PUBLISH before PUBREL is answered with PUBREC, and delivered once', { skip: target === 'mosquitto' && 'Mosquitto 2.0.11 closes the connection on the second re-send of the same QoS 2 PUBLISH' }, async (t) => {
    const topic = uid('x2/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    pub.send({ cmd: 'publish', topic, payload: 'once', qos: 2, messageId: 11 })
    assert.equal((await expectPacket(pub, 'pubrec')).messageId, 11)
    for (let i = 1; i <= 3; i++) {
      pub.send({ cmd: 'publish', topic, payload: 'once', qos: 2, messageId: 11, dup: true })
      assert.equal((await expectPacket(pub, 'pubrec')).messageId, 11, `PUBREC for re-send ${i}`)
    }
    pub.send({ cmd: 'pubrel', messageId: 11 })
    assert.equal((await expectPacket(pub, 'pubcomp')).messageId, 11)
    assert.deepEqual(payloads(await collect(sub, 500)), ['once'], 'delivered exactly once')
  })

  test('[MQTT-4.3.3-2] after PUBCOMP the server treats a QoS 2 PUBLISH reusing the packet id as a new message', async (t) => {
    const topic = uid('n2/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 0)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish2(pub, topic, 'first', 77)
    await publish2(pub, topic, 'second', 77)
    assert.deepEqual(payloads(await collect(sub, 500)), ['first', 'second'])
  })

  test('[MQTT-4.3.3-2] a PUBREL is answered with PUBCOMP carrying the same packet identifier', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('rc') })
    for (const id of [1, 0x8001, 0xffff]) {
      c.send({ cmd: 'publish', topic: uid('rc/'), payload: 'x', qos: 2, messageId: id })
      assert.equal((await expectPacket(c, 'pubrec')).messageId, id)
      c.send({ cmd: 'pubrel', messageId: id })
      assert.equal((await expectPacket(c, 'pubcomp')).messageId, id)
    }
  })

  test('[MQTT-3.6.1-1] a PUBREL whose fixed-header flags are not 0010 closes the connection', async (t) => {
    const topic = uid('rf/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const c = await raw(t, b.port, { clientId: uid('rf') })
    c.send({ cmd: 'publish', topic, payload: 'x', qos: 2, messageId: 9 })
    await expectPacket(c, 'pubrec')
    c.sendBytes([0x60, 0x02, 0x00, 0x09]) // PUBREL with flags 0000
    await expectClose(c, 2000, 'connection that sent PUBREL with flags 0000')
  })

  test('[MQTT-2.3.1-1] a QoS 1 or QoS 2 PUBLISH with packet identifier 0 closes the connection and is not delivered', async (t) => {
    const topic = uid('z/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    for (const qos of [1, 2]) {
      const c = await raw(t, b.port, { clientId: uid('z') })
      c.sendBytes(frame(0x30 | (qos << 1), Buffer.concat([field(topic), u16(0), Buffer.from(`id0-qos${qos}`)])))
      await expectClose(c, 2000, `connection that sent a QoS ${qos} PUBLISH with packet id 0`)
    }
    await expectSilence(sub, 300, 'delivery of a PUBLISH with packet id 0')
  })
})

describe('4.4 Message delivery retry', () => {
  const b = brokerForSuite()

  test('[MQTT-4.4.0-1] [MQTT-3.3.1-1] unacknowledged QoS 1 messages are re-sent on reconnect with DUP 1, the same ids, in the original order', async (t) => {
    const id = uid('r')
    const topic = uid('rt/')
    const sub = await raw(t, b.port, { clientId: id, clean: false })
    await subscribe(sub, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    for (let i = 1; i <= 3; i++) await publish1(pub, topic, `m${i}`, i)
    const first = (await collect(sub, 400)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(first), ['m1', 'm2', 'm3'])
    assert.ok(first.every((p) => !p.dup))
    sub.destroy() // no PUBACKs sent
    const again = await resume(t, b.port, id)
    const resent = (await collect(again, 500)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(resent), ['m1', 'm2', 'm3'], 're-sent in the original order')
    assert.deepEqual(resent.map((p) => p.messageId), first.map((p) => p.messageId), 'original packet identifiers')
    for (const p of resent) {
      assert.equal(p.dup, true, `DUP of re-sent "${p.payload}"`)
      assert.equal(p.qos, 1)
    }
    for (const p of resent) again.send({ cmd: 'puback', messageId: p.messageId })
    await leave(again)
    // Acknowledged messages are gone from the session.
    const third = await resume(t, b.port, id)
    await expectSilence(third, 400, 're-delivery of acknowledged messages')
  })

  test('[MQTT-4.4.0-1] [MQTT-4.3.3-1] on reconnect an un-PUBREC\'d QoS 2 PUBLISH is re-sent with DUP 1, and a PUBREC\'d one only as PUBREL', async (t) => {
    const id = uid('r')
    const topic = uid('rt/')
    const sub = await raw(t, b.port, { clientId: id, clean: false })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    await publish2(pub, topic, 'no-pubrec', 1)
    await publish2(pub, topic, 'pubrec-sent', 2)
    const [a, c] = (await collect(sub, 400)).filter((p) => p.cmd === 'publish')
    assert.deepEqual([String(a.payload), String(c.payload)], ['no-pubrec', 'pubrec-sent'])
    sub.send({ cmd: 'pubrec', messageId: c.messageId })
    assert.equal((await expectPacket(sub, 'pubrel')).messageId, c.messageId)
    sub.destroy() // neither PUBREC for a nor PUBCOMP for c
    const again = await resume(t, b.port, id)
    const resent = await collect(again, 500)
    const publishes = resent.filter((p) => p.cmd === 'publish')
    const pubrels = resent.filter((p) => p.cmd === 'pubrel')
    assert.deepEqual(publishes.map((p) => [String(p.payload), p.messageId, p.dup, p.qos]), [['no-pubrec', a.messageId, true, 2]])
    assert.deepEqual(pubrels.map((p) => p.messageId), [c.messageId], 'the PUBREL is re-sent, not the PUBLISH')
    // Finish both flows; nothing else follows.
    again.send({ cmd: 'pubcomp', messageId: c.messageId })
    again.send({ cmd: 'pubrec', messageId: a.messageId })
    assert.equal((await expectPacket(again, 'pubrel')).messageId, a.messageId)
    again.send({ cmd: 'pubcomp', messageId: a.messageId })
    await expectSilence(again, 300)
  })

  test('[MQTT-4.4.0-1] [MQTT-4.3.3-2] a QoS 2 PUBLISH re-sent after reconnect with its original id is delivered only once', async (t) => {
    const id = uid('r')
    const topic = uid('rt/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const c = await raw(t, b.port, { clientId: id, clean: false })
    c.send({ cmd: 'publish', topic, payload: 'exactly-once', qos: 2, messageId: 7 })
    assert.equal((await expectPacket(c, 'pubrec')).messageId, 7)
    c.destroy() // the PUBREC "got lost": the client re-sends the PUBLISH after reconnecting
    const again = await resume(t, b.port, id)
    again.send({ cmd: 'publish', topic, payload: 'exactly-once', qos: 2, messageId: 7, dup: true })
    assert.equal((await expectPacket(again, 'pubrec')).messageId, 7)
    again.send({ cmd: 'pubrel', messageId: 7 })
    assert.equal((await expectPacket(again, 'pubcomp')).messageId, 7)
    const got = (await collect(sub, 500)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(got), ['exactly-once'])
  })

  test('[MQTT-4.4.0-1] a PUBREL re-sent after reconnect completes the QoS 2 flow with PUBCOMP; the message is delivered once', async (t) => {
    const id = uid('r')
    const topic = uid('rt/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const c = await raw(t, b.port, { clientId: id, clean: false })
    c.send({ cmd: 'publish', topic, payload: 'pubrel-resent', qos: 2, messageId: 8 })
    assert.equal((await expectPacket(c, 'pubrec')).messageId, 8)
    c.send({ cmd: 'pubrel', messageId: 8 })
    c.destroy() // whether or not the PUBREL arrived, the client re-sends it
    const again = await resume(t, b.port, id)
    again.send({ cmd: 'pubrel', messageId: 8 })
    assert.equal((await expectPacket(again, 'pubcomp')).messageId, 8)
    const got = (await collect(sub, 500)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(got), ['pubrel-resent'])
  })
})

describe('4.6 Message ordering', () => {
  const b = brokerForSuite()

  /** Publishes `count` messages without waiting between them (MQTT.js pipelines them) and returns what a subscriber got. */
  async function pipeline(t: TestContext, qos: 0 | 1 | 2, count: number): Promise<{ sent: string[]; got: string[] }> {
    const topic = uid('or/')
    const got: string[] = []
    const sub = await mqttClient(t, b.url, { clientId: uid('s') })
    sub.on('message', (_topic, payload) => got.push(String(payload)))
    await sub.subscribeAsync(topic, { qos: 2 })
    const pub = await mqttClient(t, b.url, { clientId: uid('p') })
    const sent = Array.from({ length: count }, (_, i) => `q${qos}-${i}`)
    await Promise.all(sent.map((m) => pub.publishAsync(topic, m, { qos })))
    await waitUntil(() => got.length >= sent.length, 2000)
    await sleep(100) // let duplicates, if any, arrive
    return { sent, got }
  }

  for (const qos of [0, 1, 2] as const) {
    test(`[MQTT-4.6.0-6] [MQTT-4.6.0-5] QoS ${qos} messages from one client to one topic reach a subscriber in publication order`, async (t) => {
      const { sent, got } = await pipeline(t, qos, 15)
      assert.deepEqual(got, sent)
    })
  }

  test('[MQTT-4.6.0-6] [MQTT-4.3.3-2] 60 pipelined QoS 1 and QoS 2 messages (more than the in-flight window) are all delivered once, in order', { skip: target === 'mosquitto' && 'Mosquitto 2.0.11 completes (PUBCOMP) but never delivers QoS 2 messages beyond its 20-message in-flight window' }, async (t) => {
    for (const qos of [1, 2] as const) {
      const { sent, got } = await pipeline(t, qos, 60)
      assert.deepEqual(got, sent, `QoS ${qos}`)
    }
  })

  test('[MQTT-4.6.0-6] messages from one client to several topics keep their relative order for a subscriber to all of them', async (t) => {
    const base = uid('om')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, `${base}/#`, 1)
    const pub = await mqttClient(t, b.url, { clientId: uid('p') })
    const sent = Array.from({ length: 20 }, (_, i) => `${i}`)
    await Promise.all(sent.map((m, i) => pub.publishAsync(`${base}/t${i % 3}`, m, { qos: 1 })))
    const got: RawPacket[] = []
    while (got.length < sent.length) {
      const p = await expectPacket(sub, 'publish')
      got.push(p)
      sub.send({ cmd: 'puback', messageId: p.messageId })
    }
    assert.deepEqual(payloads(got), sent)
  })

  test('[MQTT-4.6.0-2] [MQTT-4.6.0-3] the server, as receiver, sends PUBACKs and PUBRECs in the order the PUBLISH packets arrived', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('ra') })
    const topic = uid('ra/')
    const ids = [900, 3, 65535, 17, 256, 42, 1, 5000]
    for (const [i, id] of ids.entries()) c.send({ cmd: 'publish', topic, payload: `m${i}`, qos: i % 2 ? 2 : 1, messageId: id })
    const acks: string[] = []
    for (let i = 0; i < ids.length; i++) {
      const p = await c.next(2000)
      assert.ok(p, 'connection closed')
      acks.push(`${p.cmd}:${p.messageId}`)
    }
    assert.deepEqual(acks, ids.map((id, i) => `${i % 2 ? 'pubrec' : 'puback'}:${id}`))
    for (const [i, id] of ids.entries()) if (i % 2) c.send({ cmd: 'pubrel', messageId: id })
    const comps = (await collect(c, 400)).map((p) => `${p.cmd}:${p.messageId}`)
    assert.deepEqual(comps, ids.filter((_, i) => i % 2).map((id) => `pubcomp:${id}`))
  })

  test('[MQTT-4.6.0-4] the server sends PUBRELs in the order in which it receives the PUBRECs', async (t) => {
    const topic = uid('rl/')
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, topic, 2)
    const pub = await raw(t, b.port, { clientId: uid('p') })
    for (let i = 1; i <= 5; i++) await publish2(pub, topic, `m${i}`, i)
    const got = (await collect(sub, 400)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(got), ['m1', 'm2', 'm3', 'm4', 'm5'])
    const recOrder = [got[3], got[0], got[4], got[2], got[1]].map((p) => p.messageId)
    for (const id of recOrder) sub.send({ cmd: 'pubrec', messageId: id })
    const rels = (await collect(sub, 400)).map((p) => `${p.cmd}:${p.messageId}`)
    assert.deepEqual(rels, recOrder.map((id) => `pubrel:${id}`))
    for (const id of recOrder) sub.send({ cmd: 'pubcomp', messageId: id })
    await ping(sub)
  })

  test('[fbroker] with maxInflightMessages 2 only two unacknowledged messages are sent; the rest follow, in order, as acks arrive', { skip: target === 'mosquitto' && 'Mosquitto\'s window is looser: its first PUBACK releases two queued messages' }, async (t) => {
    const s = await startBroker({ maxInflightMessages: 2 })
    t.after(() => s.close())
    const topic = uid('if/')
    const sub = await raw(t, s.port, { clientId: uid('s') })
    await subscribe(sub, topic, 1)
    const pub = await raw(t, s.port, { clientId: uid('p') })
    for (let i = 1; i <= 5; i++) await publish1(pub, topic, `m${i}`, i)
    const window = (await collect(sub, 400)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(window), ['m1', 'm2'], 'only the in-flight window is sent')
    const rest: RawPacket[] = []
    let pending = [...window]
    while (pending.length) {
      const p = pending.shift()!
      sub.send({ cmd: 'puback', messageId: p.messageId })
      const next = (await collect(sub, 200)).filter((x) => x.cmd === 'publish')
      assert.ok(next.length <= 1, `one ack must free one slot, got ${next.length} messages`)
      rest.push(...next)
      pending.push(...next)
    }
    assert.deepEqual(payloads(rest), ['m3', 'm4', 'm5'])
  })
})
