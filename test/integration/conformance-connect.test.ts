// MQTT 3.1.1 conformance, part 1: CONNECT (3.1), CONNACK (3.2), will messages, keep-alive.
// Run against Mosquitto with FBROKER_TEST_TARGET=mosquitto; see test/CONFORMANCE.md.
import { test, describe, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, startBroker, target } from '../helpers/broker'
import type { RawClient, RawPacket } from '../helpers/raw'
import { leave, ping, raw, subscribe, uid } from '../helpers/clients'
import { collect, expectClose, expectPacket, expectSilence } from '../helpers/expect'
import { CONNECT_FLAGS as F, connectPacket, field, frame, payloads, u16 } from '../helpers/packets'
import { sleep, waitUntil } from '../helpers/wait'

/** Sends raw CONNECT bytes on a fresh connection and asserts it is closed without any reply. */
async function connectIsClosed(t: TestContext, port: number, bytes: Buffer, what: string): Promise<void> {
  const c = await raw(t, port)
  c.sendBytes(bytes)
  await expectClose(c, 2000, what)
}

/** A persistent session for `clientId` with one subscription, left by DISCONNECT. */
async function storeSession(t: TestContext, port: number, clientId: string, topic = uid('s/')): Promise<string> {
  const c = await raw(t, port, { clientId, clean: false })
  await subscribe(c, topic, 1)
  await leave(c)
  return topic
}

// Mosquitto 2.0 checks keep-alive on a coarse timer: a 1 s keep-alive is enforced after ~5 s.
const MOSQ_KEEPALIVE = 'Mosquitto enforces a 1 s keep-alive only after ~5 s (coarse timer), beyond this test\'s time budget'

describe('3.1 CONNECT and 3.2 CONNACK', () => {
  const b = brokerForSuite()

  // ---- 3.1.0 ---------------------------------------------------------------
  test('[MQTT-3.1.0-1] a first packet other than CONNECT closes the connection without a reply', async (t) => {
    const a = await raw(t, b.port)
    a.send({ cmd: 'pingreq' })
    await expectClose(a, 2000, 'connection opened with PINGREQ')
    const p = await raw(t, b.port)
    p.send({ cmd: 'publish', topic: uid('t/'), payload: 'x', qos: 1, messageId: 1 })
    await expectClose(p, 2000, 'connection opened with PUBLISH')
    const s = await raw(t, b.port)
    s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] })
    await expectClose(s, 2000, 'connection opened with SUBSCRIBE')
  })

  test('[MQTT-3.1.0-2] a second CONNECT is a protocol violation and closes the connection', async (t) => {
    const id = uid('c2')
    const c = await raw(t, b.port, { clientId: id })
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: id, keepalive: 0 })
    await expectClose(c)
  })

  // ---- 3.1.2 variable header -------------------------------------------------
  test('[MQTT-3.1.2-1] a CONNECT with a wrong protocol name is not accepted as MQTT 3.1.1', async (t) => {
    const c = await raw(t, b.port)
    c.sendBytes(connectPacket({ name: 'MQTX', flags: F.clean, payload: [field(uid('pn'))] }))
    const p = await c.next(2000)
    if (p !== null) {
      assert.equal(p.cmd, 'connack')
      assert.notEqual(p.returnCode, 0, 'a wrong protocol name must not be accepted')
      await expectClose(c)
    }
  })

  test('[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01 and then the connection is closed', async (t) => {
    for (const level of [6, 0x7f]) {
      const c = await raw(t, b.port)
      c.sendBytes(connectPacket({ level, flags: F.clean, payload: [field(uid('pl'))] }))
      const ack = await expectPacket(c, 'connack')
      assert.equal(ack.returnCode, 1, `return code for protocol level ${level}`)
      assert.equal(ack.sessionPresent, false)
      await expectClose(c, 2000, `connection after CONNACK 0x01 (level ${level})`)
    }
  })

  test('[MQTT-3.1.2-3] a CONNECT with the reserved connect flag set closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.reserved, payload: [field(uid('rf'))] }), 'reserved flag')
  })

  test('[MQTT-2.2.2-2] a CONNECT with non-zero fixed-header flags closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ header: 0x12, flags: F.clean, payload: [field(uid('fh'))] }), 'fixed-header flags 0x2')
  })

  test('[MQTT-3.1.2-9] will flag set without will topic and message in the payload closes the connection', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.will, payload: [field(uid('wf'))] }), 'missing will fields')
  })

  test('[MQTT-3.1.2-13] [MQTT-3.1.2-11] will QoS 1 with will flag 0 closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.willQos1, payload: [field(uid('wq'))] }), 'will QoS without will')
  })

  test('[MQTT-3.1.2-14] will QoS 3 closes the connection without CONNACK', async (t) => {
    const flags = F.clean | F.will | F.willQos1 | F.willQos2
    const payload = [field(uid('w3')), field('will/' + uid('t')), field('bye')]
    await connectIsClosed(t, b.port, connectPacket({ flags, payload }), 'will QoS 3')
  })

  test('[MQTT-3.1.2-15] [MQTT-3.1.2-11] will retain with will flag 0 closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.willRetain, payload: [field(uid('wr'))] }), 'will retain without will')
  })

  test('[MQTT-3.1.2-19] user name flag set without a user name in the payload closes the connection', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.user, payload: [field(uid('un'))] }), 'missing user name')
  })

  test('[MQTT-3.1.2-21] password flag set without a password in the payload closes the connection', async (t) => {
    const payload = [field(uid('pw')), field('user')]
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.user | F.pass, payload }), 'missing password')
  })

  test('[MQTT-3.1.2-22] password flag set with user name flag 0 closes the connection without CONNACK', async (t) => {
    const payload = [field(uid('pu')), field('secret')]
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.pass, payload }), 'password without user name')
  })

  test('[MQTT-3.1.2-24] the server closes a connection that sends nothing for 1.5x the keep-alive (1 s)', { skip: target === 'mosquitto' && MOSQ_KEEPALIVE }, async (t) => {
    const c = await raw(t, b.port, { clientId: uid('ka'), keepalive: 1 })
    const start = Date.now()
    assert.equal(await c.closesWithin(2500), true, 'connection still open 2.5 s after the last packet (keep-alive 1 s)')
    const elapsed = Date.now() - start
    assert.ok(elapsed >= 950, `closed after ${elapsed} ms, before the keep-alive period had passed`)
  })

  test('[fbroker] PINGREQ within the keep-alive is answered with PINGRESP and keeps the connection open', async (t) => {
    const c = await raw(t, b.port, { clientId: uid('kp'), keepalive: 1 })
    for (let i = 0; i < 4; i++) {
      await sleep(650)
      await ping(c)
    }
    assert.equal(c.socket.destroyed, false)
    await expectSilence(c, 300)
  })

  // ---- 3.1.3 payload: client identifier, will topic, user name ---------------
  test('[MQTT-3.1.3-5] client ids of 1 to 23 characters from [0-9a-zA-Z] are accepted', async (t) => {
    const alnum = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
    const long = (uid('L') + alnum).slice(0, 23)
    assert.equal(long.length, 23)
    for (const id of ['Q', long, alnum.slice(-23)]) {
      const c = await raw(t, b.port)
      const ack = await c.handshake({ clientId: id })
      assert.equal(ack.returnCode, 0, `client id "${id}"`)
      c.destroy()
    }
  })

  test('[MQTT-3.1.3-6] a zero-length client id with clean session 1 is accepted and given a unique id', async (t) => {
    const a = await raw(t, b.port)
    const ackA = await a.handshake({ clientId: '', clean: true })
    assert.equal(ackA.returnCode, 0)
    assert.equal(ackA.sessionPresent, false)
    const c = await raw(t, b.port)
    const ackC = await c.handshake({ clientId: '', clean: true })
    assert.equal(ackC.returnCode, 0)
    // Distinct assigned ids: the second connection must not have taken over the first.
    await ping(a)
    await ping(c)
  })

  test('[fbroker] the id assigned to a zero-length client id is non-empty and unique', { skip: target === 'mosquitto' && 'uses fbroker clientConnected events' }, async (t) => {
    const ids: string[] = []
    const onConnected = (ev: any) => ids.push(typeof ev === 'string' ? ev : ev?.clientId)
    b.broker.on('clientConnected', onConnected)
    t.after(() => b.broker.off('clientConnected', onConnected))
    for (let i = 0; i < 2; i++) {
      const c = await raw(t, b.port)
      assert.equal((await c.handshake({ clientId: '', clean: true })).returnCode, 0)
    }
    await waitUntil(() => ids.length >= 2, 2000)
    assert.equal(ids.length, 2, 'clientConnected events')
    for (const id of ids) assert.ok(typeof id === 'string' && id.length > 0, `assigned id ${JSON.stringify(id)}`)
    assert.notEqual(ids[0], ids[1])
  })

  test('[MQTT-3.1.3-8] a zero-length client id with clean session 0 gets CONNACK 0x02 and the connection is closed', async (t) => {
    const c = await raw(t, b.port)
    c.sendBytes(connectPacket({ flags: 0, payload: [field('')] }))
    const ack = await expectPacket(c, 'connack')
    assert.equal(ack.returnCode, 2)
    assert.equal(ack.sessionPresent, false)
    await expectClose(c, 2000, 'connection after CONNACK 0x02')
  })

  test('[MQTT-3.1.3-9] a client id the server rejects (longer than maxClientIdLength) gets CONNACK 0x02 and a close', { skip: target === 'mosquitto' && 'needs fbroker maxClientIdLength' }, async (t) => {
    const s = await startBroker({ maxClientIdLength: 16 })
    t.after(() => s.close())
    const c = await raw(t, s.port)
    const ack = await c.handshake({ clientId: 'abcdefghij0123456789abcdefghij' })
    assert.equal(ack.returnCode, 2)
    assert.equal(ack.sessionPresent, false)
    await expectClose(c)
    const ok = await raw(t, s.port)
    assert.equal((await ok.handshake({ clientId: 'abcdefghij012345' })).returnCode, 0, 'a 16-character id is within the limit')
  })

  test('[MQTT-3.1.3-3] a CONNECT without a client identifier field closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean, payload: [] }), 'CONNECT without payload')
    // A lone length byte is not a client identifier either.
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean, payload: [Buffer.from([0])] }), 'CONNECT with 1 byte of payload')
  })

  test('[MQTT-3.1.3-4] [MQTT-1.5.3-1] a client id that is not well-formed UTF-8 closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean, payload: [field([0x61, 0xff, 0x62])] }), 'invalid UTF-8 client id')
    // An encoded UTF-16 surrogate (U+D800) is ill-formed too.
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean, payload: [field([0x61, 0xed, 0xa0, 0x80])] }), 'surrogate in client id')
  })

  test('[MQTT-1.5.3-2] a client id containing U+0000 closes the connection without CONNACK', async (t) => {
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean, payload: [field([0x61, 0x00, 0x62])] }), 'U+0000 in client id')
  })

  test('[MQTT-3.1.3-10] a will topic that is not well-formed UTF-8 closes the connection without CONNACK', async (t) => {
    const payload = [field(uid('wt')), field([0x77, 0xc3, 0x28]), field('bye')]
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.will, payload }), 'invalid UTF-8 will topic')
  })

  test('[MQTT-3.1.3-11] a user name that is not well-formed UTF-8 closes the connection without CONNACK', async (t) => {
    const payload = [field(uid('uu')), field([0x75, 0xe2, 0x82])]
    await connectIsClosed(t, b.port, connectPacket({ flags: F.clean | F.user, payload }), 'invalid UTF-8 user name')
  })

  // ---- 3.1.4 response ------------------------------------------------------
  test('[MQTT-3.1.4-1] [MQTT-3.2.2-6] a malformed CONNECT is closed without CONNACK', async (t) => {
    // The client id claims 50 bytes; the packet ends after 3.
    const body = Buffer.concat([field('MQTT'), Buffer.from([4, F.clean]), u16(0), u16(50), Buffer.from('abc')])
    await connectIsClosed(t, b.port, frame(0x10, body), 'truncated client id')
    // A CONNECT whose remaining length ends inside the variable header.
    await connectIsClosed(t, b.port, frame(0x10, Buffer.concat([field('MQTT'), Buffer.from([4])])), 'truncated header')
  })

  test('[MQTT-3.1.4-2] a CONNECT with the client id of a connected client disconnects the existing client', async (t) => {
    const id = uid('to')
    const first = await raw(t, b.port, { clientId: id })
    const second = await raw(t, b.port, { clientId: id })
    await expectClose(first, 2000, 'the existing connection')
    await ping(second)
  })

  test('[MQTT-3.1.4-4] a valid CONNECT using every optional field is acknowledged with return code 0', async (t) => {
    const c = await raw(t, b.port)
    const ack = await c.handshake({
      clientId: uid('ok'),
      clean: true,
      keepalive: 30,
      username: 'user',
      password: Buffer.from('pass'),
      will: { topic: 'will/' + uid('ok'), payload: Buffer.from('bye'), qos: 1, retain: false },
    })
    assert.equal(ack.returnCode, 0)
    assert.equal(ack.sessionPresent, false)
    await ping(c)
  })

  test('[MQTT-3.1.4-5] nothing the client sends after a rejected CONNECT is processed', async (t) => {
    const topic = uid('rj/')
    const sub = await raw(t, b.port, { clientId: uid('rs') })
    await subscribe(sub, topic, 1)
    const c = await raw(t, b.port)
    c.sendBytes(
      Buffer.concat([
        connectPacket({ flags: 0, payload: [field('')] }), // rejected: rc 2
        frame(0x32, Buffer.concat([field(topic), u16(1), Buffer.from('qos1')])),
        frame(0x30, Buffer.concat([field(topic), Buffer.from('qos0')])),
        frame(0x82, Buffer.concat([u16(2), field('#'), Buffer.from([0])])),
      ]),
    )
    const ack = await expectPacket(c, 'connack')
    assert.equal(ack.returnCode, 2)
    await expectClose(c, 2000, 'rejected connection (no PUBACK/SUBACK expected)')
    await expectSilence(sub, 500, 'message from the rejected connection')
  })

  // ---- 3.2 CONNACK ---------------------------------------------------------
  test('[MQTT-3.2.0-1] the first packet from the server is CONNACK, even with queued messages waiting', async (t) => {
    const id = uid('fc')
    const topic = await storeSession(t, b.port, id)
    const pub = await raw(t, b.port, { clientId: uid('fp') })
    for (let i = 1; i <= 3; i++) {
      pub.send({ cmd: 'publish', topic, payload: `m${i}`, qos: 1, messageId: i })
      await expectPacket(pub, 'puback')
    }
    const c = await raw(t, b.port)
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: id, keepalive: 0 })
    const first = await expectPacket(c, 'connack')
    assert.equal(first.returnCode, 0)
    assert.equal(first.sessionPresent, true)
    assert.deepEqual(payloads(await collect(c, 500)), ['m1', 'm2', 'm3'])
  })

  test('[MQTT-3.2.2-1] a clean-session connection gets session present 0, even when a session was stored', async (t) => {
    const id = uid('sp')
    await storeSession(t, b.port, id)
    const c = await raw(t, b.port)
    const ack = await c.handshake({ clientId: id, clean: true })
    assert.equal(ack.returnCode, 0)
    assert.equal(ack.sessionPresent, false)
  })

  test('[MQTT-3.2.2-2] resuming a stored session (clean session 0) gets session present 1', async (t) => {
    const id = uid('sp')
    await storeSession(t, b.port, id)
    const c = await raw(t, b.port)
    const ack = await c.handshake({ clientId: id, clean: false })
    assert.equal(ack.returnCode, 0)
    assert.equal(ack.sessionPresent, true)
  })

  test('[MQTT-3.2.2-3] clean session 0 without a stored session gets session present 0', async (t) => {
    const c = await raw(t, b.port)
    const ack = await c.handshake({ clientId: uid('sp'), clean: false })
    assert.equal(ack.returnCode, 0)
    assert.equal(ack.sessionPresent, false)
  })

  test('[MQTT-3.2.2-4] a CONNACK with a non-zero return code has session present 0, even when a session is stored', async (t) => {
    const id = uid('sp')
    await storeSession(t, b.port, id)
    const c = await raw(t, b.port)
    c.sendBytes(connectPacket({ level: 6, flags: 0, payload: [field(id)] }))
    const ack = await expectPacket(c, 'connack')
    assert.notEqual(ack.returnCode, 0)
    assert.equal(ack.sessionPresent, false)
    await expectClose(c)
    // The stored session was not touched by the refused attempt.
    const again = await raw(t, b.port)
    assert.equal((await again.handshake({ clientId: id, clean: false })).sessionPresent, true)
  })
})

describe('3.1.2.5-3.1.2.7 Will message', () => {
  const b = brokerForSuite()

  /** A subscriber to a fresh will topic, and the CONNECT fields of a client with that will. */
  async function willSetup(t: TestContext, will: { qos?: 0 | 1 | 2; retain?: boolean } = {}, subQos: 0 | 1 | 2 = 0) {
    const topic = uid('will/')
    const payload = 'gone-' + topic
    const sub = await raw(t, b.port, { clientId: uid('ws') })
    await subscribe(sub, topic, subQos)
    const fields = {
      clientId: uid('wc'),
      will: { topic, payload: Buffer.from(payload), qos: will.qos ?? 0, retain: will.retain ?? false },
    }
    return { topic, payload, sub, fields }
  }

  async function expectWill(sub: RawClient, topic: string, payload: string, ms = 2000): Promise<RawPacket> {
    const p = await expectPacket(sub, 'publish', ms)
    assert.equal(p.topic, topic)
    assert.equal(String(p.payload), payload)
    return p
  }

  test('[MQTT-3.1.2-8] the will is published when the client closes the socket without DISCONNECT', async (t) => {
    const w = await willSetup(t)
    const c = await raw(t, b.port, w.fields)
    c.destroy()
    await expectWill(w.sub, w.topic, w.payload)
  })

  test('[MQTT-3.1.2-8] the will is published when the server closes the connection on keep-alive timeout', { skip: target === 'mosquitto' && MOSQ_KEEPALIVE }, async (t) => {
    const w = await willSetup(t)
    await raw(t, b.port, { ...w.fields, keepalive: 1 })
    await expectWill(w.sub, w.topic, w.payload, 3500)
  })

  test('[MQTT-3.1.2-8] the will is published when the server closes the connection for a protocol error', async (t) => {
    const w = await willSetup(t)
    const c = await raw(t, b.port, w.fields)
    c.sendBytes(frame(0x36, Buffer.concat([field('x'), u16(1), Buffer.from('qos3')]))) // PUBLISH with QoS 3
    await expectClose(c)
    await expectWill(w.sub, w.topic, w.payload)
  })

  test('[MQTT-3.1.2-8] the will is published when the connection is taken over by the same client id', async (t) => {
    const w = await willSetup(t)
    const old = await raw(t, b.port, w.fields)
    await raw(t, b.port, { clientId: w.fields.clientId })
    await expectClose(old, 2000, 'the taken-over connection')
    await expectWill(w.sub, w.topic, w.payload)
  })

  test('[MQTT-3.1.2-10] the will is discarded, not published, when the client sends DISCONNECT', async (t) => {
    const w = await willSetup(t)
    const c = await raw(t, b.port, w.fields)
    c.send({ cmd: 'disconnect' })
    await c.closesWithin(500)
    c.destroy()
    await expectSilence(w.sub, 600, 'will after DISCONNECT')
  })

  test('[MQTT-3.1.2-12] without the will flag nothing is published when the connection drops', async (t) => {
    const s = await startBroker()
    t.after(() => s.close())
    const sub = await raw(t, s.port, { clientId: uid('ws') })
    await subscribe(sub, '#', 0)
    const c = await raw(t, s.port, { clientId: uid('nw') })
    c.destroy()
    const e = await raw(t, s.port, { clientId: uid('ne') })
    e.sendBytes(frame(0x36, Buffer.concat([field('x'), u16(1), Buffer.from('qos3')]))) // protocol error
    await expectClose(e)
    await expectSilence(sub, 500, 'message after connections without a will dropped')
  })

  test('[MQTT-3.1.2-9] the will is published with the will QoS (QoS 1 and QoS 2)', async (t) => {
    for (const qos of [1, 2] as const) {
      const w = await willSetup(t, { qos }, 2)
      const c = await raw(t, b.port, w.fields)
      c.destroy()
      const p = await expectWill(w.sub, w.topic, w.payload)
      assert.equal(p.qos, qos, `will QoS ${qos} delivered to a QoS 2 subscription`)
      assert.ok(p.messageId > 0)
    }
    // And it is downgraded to a lower subscription QoS like any message.
    const w = await willSetup(t, { qos: 2 }, 1)
    ;(await raw(t, b.port, w.fields)).destroy()
    assert.equal((await expectWill(w.sub, w.topic, w.payload)).qos, 1)
  })

  test('[MQTT-3.1.2-16] a will with will retain 0 is published as a non-retained message', async (t) => {
    const w = await willSetup(t, { retain: false })
    ;(await raw(t, b.port, w.fields)).destroy()
    const p = await expectWill(w.sub, w.topic, w.payload)
    assert.equal(p.retain, false)
    const late = await raw(t, b.port, { clientId: uid('wl') })
    await subscribe(late, w.topic, 0)
    await expectSilence(late, 400, 'retained will')
  })

  test('[MQTT-3.1.2-17] a will with will retain 1 is published as a retained message', async (t) => {
    const w = await willSetup(t, { retain: true, qos: 1 }, 1)
    ;(await raw(t, b.port, w.fields)).destroy()
    await expectWill(w.sub, w.topic, w.payload)
    const late = await raw(t, b.port, { clientId: uid('wl') })
    late.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: w.topic, qos: 1 }] })
    await expectPacket(late, 'suback')
    const p = await expectWill(late, w.topic, w.payload)
    assert.equal(p.retain, true, 'the will was stored as the retained message')
    assert.equal(p.qos, 1)
    // Clear the retained message.
    late.send({ cmd: 'publish', topic: w.topic, payload: Buffer.alloc(0), qos: 0, retain: true })
  })
})

describe('[fbroker] connection limits', () => {
  test('[fbroker] a connection that never completes CONNECT is closed after connectTimeoutMs', { skip: target === 'mosquitto' && 'needs fbroker connectTimeoutMs' }, async (t) => {
    const s = await startBroker({ connectTimeoutMs: 300 })
    t.after(() => s.close())
    const idle = await raw(t, s.port)
    const partial = await raw(t, s.port)
    partial.sendBytes(connectPacket({ flags: F.clean, payload: [field('partial')] }).subarray(0, 6))
    const start = Date.now()
    assert.equal(await idle.closesWithin(2000), true, 'silent socket still open')
    assert.equal(await partial.closesWithin(500), true, 'socket with a partial CONNECT still open')
    const elapsed = Date.now() - start
    assert.ok(elapsed >= 200, `closed after ${elapsed} ms, before connectTimeoutMs`)
    // A client that does connect in time is unaffected.
    const ok = await raw(t, s.port, { clientId: uid('ct') })
    await sleep(500)
    await ping(ok)
  })
})
