// MQTT 3.1.1 conformance, part 1: Clean Session and session state (3.1.2.4, 4.1), offline queueing.
// Run against Mosquitto with FBROKER_TEST_TARGET=mosquitto; see test/CONFORMANCE.md.
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, startBroker, target } from '../helpers/broker'
import { ackAll, connectAs, leave, ping, publish1, publish2, raw, subscribe, uid } from '../helpers/clients'
import type { RawPacket } from '../helpers/raw'
import { collect, expectClose, expectPacket, expectSilence } from '../helpers/expect'
import { payloads } from '../helpers/packets'
import { sleep, waitUntil } from '../helpers/wait'

describe('3.1.2.4 Clean Session and 4.1 session state', () => {
  const b = brokerForSuite()

  test('[MQTT-3.1.2-4] with clean session 0 the subscriptions survive a DISCONNECT and the session is resumed', async (t) => {
    const id = uid('p')
    const topic = uid('cs/')
    const first = await connectAs(t, b.port, id, false)
    assert.equal(first.ack.sessionPresent, false, 'new session')
    await subscribe(first.c, topic, 1)
    await leave(first.c)
    const again = await connectAs(t, b.port, id, false)
    assert.equal(again.ack.sessionPresent, true)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'still-subscribed')
    assert.deepEqual(payloads(await collect(again.c, 400)), ['still-subscribed'], 'no re-subscribe was needed')
  })

  test('[MQTT-3.1.2-4] a clean-session-0 session is also kept when the connection drops without DISCONNECT', async (t) => {
    const id = uid('p')
    const topic = uid('cs/')
    const first = await connectAs(t, b.port, id, false)
    await subscribe(first.c, topic, 1)
    first.c.destroy()
    await first.c.closed
    await sleep(100)
    const again = await connectAs(t, b.port, id, false)
    assert.equal(again.ack.sessionPresent, true)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'after-drop')
    assert.deepEqual(payloads(await collect(again.c, 400)), ['after-drop'])
  })

  test('[MQTT-3.1.2-5] QoS 1 and QoS 2 messages published while the client is offline are delivered when it reconnects', async (t) => {
    const id = uid('p')
    const topic = uid('of/')
    const first = await connectAs(t, b.port, id, false)
    await subscribe(first.c, topic, 2)
    await leave(first.c)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'offline-q1', 1)
    await publish2(pub, topic, 'offline-q2', 2)
    await publish1(pub, topic, 'offline-q1b', 3)
    const again = await connectAs(t, b.port, id, false)
    assert.equal(again.ack.sessionPresent, true)
    const got = (await collect(again.c, 500)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(got.map((p) => [String(p.payload), p.qos]), [['offline-q1', 1], ['offline-q2', 2], ['offline-q1b', 1]])
    for (const p of got) assert.equal(p.dup, false, `"${p.payload}" is a first transmission (MQTT-3.3.1-3)`)
    ackAll(again.c, got)
  })

  test('[fbroker] QoS 0 messages are not queued for an offline client', async (t) => {
    const id = uid('p')
    const topic = uid('z/')
    const downgraded = uid('zd/')
    const first = await connectAs(t, b.port, id, false)
    await subscribe(first.c, topic, 1, 1)
    await subscribe(first.c, downgraded, 0, 2)
    await leave(first.c)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    pub.send({ cmd: 'publish', topic, payload: 'published-qos0', qos: 0 })
    await publish1(pub, downgraded, 'granted-qos0', 1)
    await publish1(pub, topic, 'qos1-marker', 2)
    const again = await connectAs(t, b.port, id, false)
    const got = await collect(again.c, 500)
    assert.deepEqual(payloads(got), ['qos1-marker'], 'only the QoS 1 message was queued')
  })

  test('[MQTT-3.1.2-6] [MQTT-3.1.4-3] clean session 1 discards the stored session: no subscriptions, no queued messages', async (t) => {
    const id = uid('p')
    const topic = uid('cl/')
    const first = await connectAs(t, b.port, id, false)
    await subscribe(first.c, topic, 1)
    await leave(first.c)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'queued-before-clean', 1)
    const clean = await connectAs(t, b.port, id, true)
    assert.equal(clean.ack.sessionPresent, false)
    await publish1(pub, topic, 'after-clean', 2)
    await expectSilence(clean.c, 400, 'message from the discarded session')
    await leave(clean.c)
    // The discarded session does not come back either.
    const later = await connectAs(t, b.port, id, false)
    assert.equal(later.ack.sessionPresent, false, 'the old session was discarded')
    await publish1(pub, topic, 'later', 3)
    await expectSilence(later.c, 400, 'message for a discarded subscription')
  })

  test('[MQTT-3.1.2-6] a clean-session-1 session ends with the connection and is not reused', async (t) => {
    const id = uid('p')
    const topic = uid('cl/')
    const first = await connectAs(t, b.port, id, true)
    await subscribe(first.c, topic, 1)
    await leave(first.c)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'while-away', 1)
    const again = await connectAs(t, b.port, id, false)
    assert.equal(again.ack.sessionPresent, false)
    await publish1(pub, topic, 'after', 2)
    await expectSilence(again.c, 400, 'message for the clean session\'s subscription')
  })

  test('[MQTT-3.1.2-7] retained messages are not deleted when the publisher\'s session ends', async (t) => {
    const base = uid('rt')
    for (const clean of [true, false]) {
      const id = uid('p')
      const pubr = await connectAs(t, b.port, id, clean)
      pubr.c.send({ cmd: 'publish', topic: `${base}/${clean}`, payload: `retained-${clean}`, qos: 1, messageId: 1, retain: true })
      await expectPacket(pubr.c, 'puback')
      await leave(pubr.c)
      if (!clean) {
        // End the persistent session too: a clean-session connection discards it.
        const end = await connectAs(t, b.port, id, true)
        await leave(end.c)
      }
    }
    const sub = await raw(t, b.port, { clientId: uid('s') })
    await subscribe(sub, `${base}/+`, 1)
    const got = (await collect(sub, 400)).filter((p) => p.cmd === 'publish')
    assert.deepEqual(payloads(got).sort(), ['retained-false', 'retained-true'])
    assert.ok(got.every((p) => p.retain))
    ackAll(sub, got)
  })

  test('[MQTT-4.1.0-1] an unacknowledged QoS 1 message stays in the session across reconnects until it is acknowledged', async (t) => {
    const id = uid('p')
    const topic = uid('st/')
    const first = await connectAs(t, b.port, id, false)
    await subscribe(first.c, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'keep-me')
    const original = await expectPacket(first.c, 'publish')
    first.c.destroy()
    for (let round = 1; round <= 2; round++) {
      const again = await connectAs(t, b.port, id, false)
      assert.equal(again.ack.sessionPresent, true)
      const p = await expectPacket(again.c, 'publish')
      assert.equal(String(p.payload), 'keep-me')
      assert.equal(p.messageId, original.messageId)
      assert.equal(p.dup, true)
      if (round === 2) {
        again.c.send({ cmd: 'puback', messageId: p.messageId })
        await ping(again.c)
      }
      await leave(again.c)
    }
    const last = await connectAs(t, b.port, id, false)
    assert.equal(last.ack.sessionPresent, true)
    await expectSilence(last.c, 300, 'the acknowledged message')
    await publish1(pub, topic, 'subscription-kept', 2)
    assert.deepEqual(payloads(await collect(last.c, 300)), ['subscription-kept'])
  })

  test('[MQTT-3.1.4-2] a takeover with clean session 0 continues the session, including unacknowledged messages', async (t) => {
    const id = uid('p')
    const topic = uid('tk/')
    const old = await connectAs(t, b.port, id, false)
    await subscribe(old.c, topic, 1)
    const pub = await raw(t, b.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'in-flight', 1)
    const inflight = await expectPacket(old.c, 'publish')
    const next = await connectAs(t, b.port, id, false)
    assert.equal(next.ack.sessionPresent, true)
    await expectClose(old.c, 2000, 'the taken-over connection')
    const resent = await expectPacket(next.c, 'publish')
    assert.equal(String(resent.payload), 'in-flight')
    assert.equal(resent.messageId, inflight.messageId)
    assert.equal(resent.dup, true)
    next.c.send({ cmd: 'puback', messageId: resent.messageId })
    await publish1(pub, topic, 'after-takeover', 2)
    assert.deepEqual(payloads(await collect(next.c, 300)), ['after-takeover'])
  })

  test('[MQTT-4.1.0-2] a session lasts as long as its connection, even past sessionExpirySecs', async (t) => {
    const s = await startBroker({ sessionExpirySecs: 1 })
    t.after(() => s.close())
    const topic = uid('ex/')
    const persistent = await connectAs(t, s.port, uid('p'), false)
    await subscribe(persistent.c, topic, 1)
    const clean = await connectAs(t, s.port, uid('c'), true)
    await subscribe(clean.c, topic, 1)
    await sleep(1600) // idle (keep-alive 0) for longer than the session expiry
    const pub = await raw(t, s.port, { clientId: uid('pb') })
    await publish1(pub, topic, 'still-here')
    assert.deepEqual(payloads(await collect(persistent.c, 300)), ['still-here'], 'persistent session')
    assert.deepEqual(payloads(await collect(clean.c, 100)), ['still-here'], 'clean session')
  })
})

describe('[fbroker] bounded offline queue', () => {
  for (const policy of ['drop_oldest', 'drop_new'] as const) {
    test(`[fbroker] maxQueuedMessages 5 with ${policy}: 10 messages published offline, the ${policy === 'drop_oldest' ? 'newest' : 'oldest'} 5 are delivered and 5 counted as dropped`, { skip: target === 'mosquitto' && 'needs fbroker queueDropPolicy and stats()' }, async (t) => {
      const s = await startBroker({ maxQueuedMessages: 5, queueDropPolicy: policy })
      t.after(() => s.close())
      const id = uid('q')
      const topic = uid('bq/')
      const first = await connectAs(t, s.port, id, false)
      await subscribe(first.c, topic, 1)
      await leave(first.c)
      const pub = await raw(t, s.port, { clientId: uid('pb') })
      for (let i = 1; i <= 10; i++) await publish1(pub, topic, `m${i}`, i)
      const again = await connectAs(t, s.port, id, false)
      const got = await collect(again.c, 500)
      const expected = policy === 'drop_oldest' ? ['m6', 'm7', 'm8', 'm9', 'm10'] : ['m1', 'm2', 'm3', 'm4', 'm5']
      assert.deepEqual(payloads(got), expected)
      ackAll(again.c, got)
      const stats = await s.broker.stats()
      assert.equal(Number(stats.publishDropped), 5, `stats: ${JSON.stringify(stats)}`)
    })
  }
})

describe('[fbroker] bounded online queue', () => {
  test('[fbroker] a subscriber that stops reading: QoS 0 beyond maxQueuedMessages is dropped and counted; once it reads again it gets all the rest, in order, with no further publish to wake it', { skip: target === 'mosquitto' && 'needs fbroker stats()' }, async (t) => {
    const s = await startBroker({ maxQueuedMessages: 50 })
    t.after(() => s.close())
    const topic = uid('slow/')
    const sub = await raw(t, s.port, { clientId: uid('s') })
    await subscribe(sub, topic, 0)
    sub.socket.pause()
    const pub = await raw(t, s.port, { clientId: uid('p') })
    // 48 MiB: more than loopback socket buffers and the broker's 256 KiB
    // write buffer can hold, so the queue limit has to act.
    const total = 6000
    const pad = 'x'.repeat(8 * 1024)
    for (let n = 0; n < total; n++) {
      pub.send({ cmd: 'publish', topic, payload: `${n}:${pad}`, qos: 0 })
      // Lets the broker read as it goes rather than after one 48 MiB write.
      if (n % 500 === 499) await sleep(5)
    }
    let stats: any
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(20)) {
      stats = s.broker.stats()
      if (Number(stats.messagesReceived) >= total) break
    }
    const dropped = Number(stats.publishDropped)
    assert.ok(dropped > 0, `nothing dropped: ${JSON.stringify(stats)}`)
    const got: string[] = []
    void (async () => {
      for (let p: RawPacket | null; (p = await sub.next(60_000).catch(() => null)); ) if (p.cmd === 'publish') got.push(String(p.payload))
    })()
    sub.socket.resume()
    await waitUntil(() => got.length >= total - dropped, 10_000)
    await sleep(200)
    assert.equal(got.length + dropped, total, `delivered ${got.length} + dropped ${dropped}`)
    const seq = got.map((m) => Number(m.slice(0, m.indexOf(':'))))
    for (let i = 1; i < seq.length; i++) assert.ok(seq[i] > seq[i - 1], `out of order at ${i}: ${seq[i - 1]} then ${seq[i]}`)
  })
})
