// MQTT over WebSocket (MQTT 3.1.1 section 6, RFC 6455) on the ws and wss
// listeners, with hand-built upgrade requests and frames: the subprotocol
// answer, packets that ignore frame boundaries, and bad input (text frames,
// non-MQTT bytes, wrong paths and subprotocols, oversized and unmasked
// frames, foreign origins). Each bad connection must be closed on its own: a
// client connected to the same listener beforehand keeps publishing and
// receiving.
import { after, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import { target } from '../helpers/broker'
import { uid } from '../helpers/clients'
import { connectVia, inbox, type ListenerProtocol } from '../helpers/listeners'
import { makeCerts } from '../helpers/tls'
import { OP, RawWs, connectPacket, frame, mqttBytes } from '../helpers/ws'

const skip = target === 'mosquitto' && 'fbroker listeners configuration'
const certs = makeCerts({ prefix: 'listeners-ws' })
const MAX_PACKET = 4096
const GOOD_ORIGIN = 'http://good.example:8080'

let broker: any
const port: Record<'ws' | 'wss' | 'origins', number> = { ws: 0, wss: 0, origins: 0 }
const tlsOpts = (): ConnectionOptions => ({ ca: certs.read().ca })

/** Opens a raw WebSocket on the ws or wss listener; destroyed when the test ends. */
async function openWs(t: TestContext, kind: 'ws' | 'wss'): Promise<RawWs> {
  const ws = await RawWs.open(port[kind], kind === 'wss' ? { tls: tlsOpts() } : {})
  t.after(() => ws.destroy())
  return ws
}

/**
 * An MQTT.js client on the same listener, connected before the bad input:
 * `stillWorks` asserts it was not disconnected and that a QoS 1 publish to
 * itself still comes back.
 */
async function bystander(t: TestContext, kind: ListenerProtocol) {
  const c = await connectVia(t, kind, port[kind as 'ws' | 'wss'], certs)
  let closed = false
  c.on('close', () => (closed = true))
  const box = inbox(c)
  const topic = uid('bystander/')
  await c.subscribeAsync(topic, { qos: 1 })
  return {
    async stillWorks() {
      assert.equal(closed, false, `the ${kind} bystander client was disconnected`)
      const payload = `still here ${Date.now()}`
      await c.publishAsync(topic, payload, { qos: 1 })
      await box.count(1)
      assert.deepEqual(box.got.map((m) => m.payload), [payload])
    },
  }
}

/** Asserts the server closed the TCP connection within `ms`. */
async function assertClosed(ws: RawWs, what: string, ms = 2000) {
  assert.ok(await ws.closesWithin(ms), `${what}: the connection is still open after ${ms} ms`)
}

describe('MQTT over WebSocket', { skip }, () => {
  before(async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      maxPacketSize: MAX_PACKET,
      connectTimeoutMs: 1500,
      listeners: [
        { type: 'ws', port: 0 },
        { type: 'wss', port: 0, cert: certs.cert, key: certs.key },
        { type: 'ws', port: 0, path: '/mqtt', allowedOrigins: [GOOD_ORIGIN] },
      ],
    })
    const bound: Array<{ protocol: string; port: number }> = broker.boundListeners
    assert.deepEqual(bound.map((l) => l.protocol), ['ws', 'wss', 'ws'])
    port.ws = bound[0]!.port
    port.wss = bound[1]!.port
    port.origins = bound[2]!.port
  })
  after(() => broker?.close())

  // ---- the upgrade -------------------------------------------------------------

  test('[MQTT-6.0.0-4] the 101 answer selects the "mqtt" subprotocol, also when "mqttv3.1" is offered first; an MQTT 3.1 client offering only "mqttv3.1" gets that', async () => {
    for (const [offered, chosen] of [
      [['mqtt'], 'mqtt'],
      [['mqttv3.1', 'mqtt'], 'mqtt'],
      [['mqttv3.1'], 'mqttv3.1'],
    ] as const) {
      const { response, ws } = await RawWs.upgrade(port.ws, { protocols: [...offered] })
      ws.destroy()
      assert.equal(response.status, 101, `offered ${offered.join(', ')}: ${response.head}`)
      assert.equal(response.headers['sec-websocket-protocol'], chosen, `offered ${offered.join(', ')}`)
      assert.match(response.headers['upgrade'] ?? '', /^websocket$/i)
    }
  })

  test('[MQTT-6.0.0-3] an upgrade offering only subprotocols other than mqtt is refused with HTTP 400 and closed; the listener keeps serving', async (t) => {
    const other = await bystander(t, 'ws')
    const { response, ws } = await RawWs.upgrade(port.ws, { protocols: ['chat', 'superchat'] })
    t.after(() => ws.destroy())
    assert.equal(response.status, 400, response.head)
    assert.equal(response.headers['sec-websocket-accept'], undefined)
    await assertClosed(ws, 'refused upgrade')
    await other.stillWorks()
  })

  test('[fbroker] an upgrade that offers no subprotocol is accepted (docs/listeners.md) and carries MQTT', async (t) => {
    const ws = await RawWs.open(port.ws, { protocols: [] })
    t.after(() => ws.destroy())
    assert.equal(ws.response.headers['sec-websocket-protocol'], undefined)
    await ws.handshake(uid('noproto'))
  })

  test('[fbroker] an upgrade for another path gets HTTP 404 and is closed; the listener keeps serving', async (t) => {
    const other = await bystander(t, 'ws')
    for (const path of ['/', '/other', '/mqtt/x']) {
      const { response, ws } = await RawWs.upgrade(port.ws, { path })
      t.after(() => ws.destroy())
      assert.equal(response.status, 404, `${path}: ${response.head}`)
      await assertClosed(ws, `upgrade for ${path}`)
    }
    // The query string is not part of the path.
    const ok = await RawWs.open(port.ws, { path: '/mqtt?token=abc' })
    t.after(() => ok.destroy())
    await ok.handshake(uid('query'))
    await other.stillWorks()
  })

  test('[fbroker] a request that is not a WebSocket upgrade (plain GET, HTTP/1.0, POST) gets a 4xx answer and is closed', async (t) => {
    const plainGet = 'GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n'
    const http10 = 'GET /mqtt HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
    const post = http10.replace('GET', 'POST').replace('HTTP/1.0', 'HTTP/1.1')
    for (const [raw, status] of [
      [plainGet, 426],
      [http10, 400],
      [post, 405],
    ] as const) {
      const { response, ws } = await RawWs.upgrade(port.ws, { raw })
      t.after(() => ws.destroy())
      assert.equal(response.status, status, `${JSON.stringify(raw.split('\r\n')[0])}: ${response.head}`)
      await assertClosed(ws, raw.split('\r\n')[0]!)
    }
  })

  test('[fbroker] an upgrade request head over 8 KiB gets HTTP 431 and is closed', async (t) => {
    const big = `GET /mqtt HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(9000)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
    const { response, ws } = await RawWs.upgrade(port.ws, { raw: big })
    t.after(() => ws.destroy())
    assert.equal(response.status, 431, response.head)
    await assertClosed(ws, 'oversized request head')
  })

  test('[fbroker] an upgrade request that never ends is closed after connect_timeout_ms; a client on the same listener keeps working', async (t) => {
    const other = await bystander(t, 'ws')
    const s = netConnect(port.ws, '127.0.0.1')
    t.after(() => s.destroy())
    s.on('error', () => {})
    await new Promise<void>((resolve) => s.once('connect', () => resolve()))
    s.write('GET /mqtt HTTP/1.1\r\nHost: x\r\n') // and nothing more
    const started = Date.now()
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000)
      s.once('close', () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    assert.ok(closed, 'still open 5 s later (connect_timeout_ms is 1500)')
    assert.ok(Date.now() - started >= 1000, `closed after only ${Date.now() - started} ms`)
    await other.stillWorks()
  })

  test('[fbroker] allowed_origins: a browser Origin on the list is accepted (case and trailing slash ignored), another gets HTTP 403, a request without Origin is accepted', async (t) => {
    for (const origin of [GOOD_ORIGIN, 'HTTP://GOOD.EXAMPLE:8080/']) {
      const ws = await RawWs.open(port.origins, { origin })
      t.after(() => ws.destroy())
      await ws.handshake(uid('origin'))
    }
    for (const origin of ['http://evil.example', 'http://good.example:8081', 'null']) {
      const { response, ws } = await RawWs.upgrade(port.origins, { origin })
      t.after(() => ws.destroy())
      assert.equal(response.status, 403, `Origin ${origin}: ${response.head}`)
      await assertClosed(ws, `Origin ${origin}`)
    }
    const noOrigin = await RawWs.open(port.origins)
    t.after(() => noOrigin.destroy())
    await noOrigin.handshake(uid('noorigin'))
  })

  // ---- frames ------------------------------------------------------------------

  test('[MQTT-6.0.0-2] packets need not align with frames: a CONNECT split over three frames, then SUBSCRIBE, PUBLISH and PINGREQ in one frame', async (t) => {
    for (const kind of ['ws', 'wss'] as const) {
      const ws = await openWs(t, kind)
      const connect = mqttBytes(connectPacket(uid('split')))
      ws.sendFrame(OP.binary, connect.subarray(0, 1))
      ws.sendFrame(OP.binary, connect.subarray(1, 7))
      ws.sendFrame(OP.binary, connect.subarray(7))
      const ack = await ws.expect('connack')
      assert.equal(ack.returnCode, 0)
      const topic = uid('frames/')
      ws.sendFrame(
        OP.binary,
        Buffer.concat([
          mqttBytes({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }),
          mqttBytes({ cmd: 'publish', topic, payload: Buffer.from('one frame'), qos: 0 }),
          mqttBytes({ cmd: 'pingreq' }),
        ]),
      )
      // The PUBLISH comes back through the session queue, so it may follow the PINGRESP.
      const got = [await ws.next(), await ws.next(), await ws.next()].map((p) => p?.cmd)
      assert.equal(got[0], 'suback', kind)
      assert.deepEqual(got.slice(1).sort(), ['pingresp', 'publish'], kind)
    }
  })

  test('[MQTT-6.0.0-2] a packet in a fragmented message (a binary frame without FIN, then continuation frames) with a ping between the fragments', async (t) => {
    const ws = await openWs(t, 'ws')
    await ws.handshake(uid('frag'))
    const topic = uid('frag/')
    const sub = mqttBytes({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic, qos: 1 }] })
    ws.sendFrame(OP.binary, sub.subarray(0, 3), { fin: false })
    ws.sendFrame(OP.ping, 'are you there', {})
    ws.sendFrame(OP.continuation, sub.subarray(3, 5), { fin: false })
    ws.sendFrame(OP.continuation, sub.subarray(5), { fin: true })
    const ack = await ws.expect('suback')
    assert.equal(ack.messageId, 7)
    assert.deepEqual(ack.granted, [1])
    assert.deepEqual(ws.pongs.map((p) => p.toString()), ['are you there'], 'the ping is answered with a pong carrying its payload')
  })

  test('[fbroker] the server sends MQTT in unmasked binary frames (RFC 6455 5.1)', async (t) => {
    const ws = await openWs(t, 'ws')
    await ws.handshake(uid('server-frames'))
    assert.ok(ws.opcodes.length > 0)
    assert.ok(ws.opcodes.every((op) => op === OP.binary), `server frame opcodes: ${ws.opcodes}`)
    assert.equal(ws.maskedFromServer, false)
  })

  for (const kind of ['ws', 'wss'] as const) {
    test(`[MQTT-6.0.0-1] a text frame closes that connection (${kind}, close status 1003); a client on the same listener keeps working`, async (t) => {
      const other = await bystander(t, kind)
      const ws = await openWs(t, kind)
      await ws.handshake(uid('text'))
      ws.sendFrame(OP.text, mqttBytes({ cmd: 'pingreq' }))
      await assertClosed(ws, 'text frame')
      assert.equal(ws.closeCode, 1003, 'close status')
      await other.stillWorks()
    })
  }

  test('[MQTT-6.0.0-1] a text frame instead of the CONNECT closes the connection without a CONNACK', async (t) => {
    const ws = await openWs(t, 'ws')
    ws.sendFrame(OP.text, mqttBytes(connectPacket(uid('textconnect'))))
    await assertClosed(ws, 'text CONNECT')
    assert.equal(await ws.next(100), null, 'no MQTT packet was sent back')
    assert.equal(ws.closeCode, 1003)
  })

  test('[MQTT-3.1.0-1] a binary frame that is not MQTT (an HTTP request line) instead of CONNECT closes that connection; a client on the same listener keeps working', async (t) => {
    const other = await bystander(t, 'ws')
    const ws = await openWs(t, 'ws')
    ws.sendFrame(OP.binary, 'GET / HTTP/1.1\r\nHost: example\r\n\r\n')
    await assertClosed(ws, 'non-MQTT binary frame')
    assert.equal(await ws.next(100), null, 'no MQTT packet was sent back')
    await other.stillWorks()
  })

  test('[fbroker] a binary frame with a reserved packet type after CONNECT closes that connection with a WebSocket close frame; a client on the same listener keeps working', async (t) => {
    const other = await bystander(t, 'wss')
    const ws = await openWs(t, 'wss')
    await ws.handshake(uid('reserved'))
    ws.sendFrame(OP.binary, Buffer.from([0xf0, 0x00])) // packet type 15: reserved in 3.1.1
    await assertClosed(ws, 'reserved packet type')
    assert.notEqual(ws.closeCode, undefined, 'a WebSocket close frame was sent before the TCP close')
    await other.stillWorks()
  })

  for (const kind of ['ws', 'wss'] as const) {
    test(`[fbroker] a frame declaring 1 MiB (over max_packet_size) closes that connection with status 1009 before its payload is sent (${kind}); a client on the same listener keeps working`, async (t) => {
      const other = await bystander(t, kind)
      const ws = await openWs(t, kind)
      await ws.handshake(uid('big'))
      // Only the header: the broker must decide from the declared length.
      ws.sendBytes(frame(OP.binary, Buffer.alloc(0), { length: 1 << 20 }))
      await assertClosed(ws, 'oversized frame')
      assert.equal(ws.closeCode, 1009, 'close status')
      await other.stillWorks()
    })
  }

  test(
    '[fbroker] a frame declaring max_packet_size + 1 bytes closes the connection with status 1009 (docs/listeners.md: "a frame whose payload is larger than max_packet_size")',
    async (t) => {
      const ws = await openWs(t, 'ws')
      await ws.handshake(uid('big1'))
      ws.sendBytes(frame(OP.binary, Buffer.alloc(0), { length: MAX_PACKET + 1 }))
      await assertClosed(ws, 'frame of max_packet_size + 1', 1000)
      assert.equal(ws.closeCode, 1009, 'close status')
    },
  )

  test('[fbroker] a frame of exactly max_packet_size bytes carrying a PUBLISH of that size is accepted', async (t) => {
    const ws = await openWs(t, 'ws')
    await ws.handshake(uid('exact'))
    const topic = uid('exact/')
    ws.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] })
    await ws.expect('suback')
    // Fixed header 1 + remaining length 2 (< 16384) + topic 2+len: fill the rest with payload.
    const overhead = 1 + 2 + 2 + Buffer.byteLength(topic)
    const packet = mqttBytes({ cmd: 'publish', topic, payload: Buffer.alloc(MAX_PACKET - overhead, 0x61), qos: 0 })
    assert.equal(packet.length, MAX_PACKET)
    ws.sendFrame(OP.binary, packet)
    const got = await ws.expect('publish')
    assert.equal(got.payload.length, MAX_PACKET - overhead)
  })

  test('[fbroker] an unmasked client frame closes that connection with status 1002 (RFC 6455 5.1); a client on the same listener keeps working', async (t) => {
    const other = await bystander(t, 'ws')
    const ws = await openWs(t, 'ws')
    await ws.handshake(uid('unmasked'))
    ws.sendFrame(OP.binary, mqttBytes({ cmd: 'pingreq' }), { mask: false })
    await assertClosed(ws, 'unmasked frame')
    assert.equal(ws.closeCode, 1002)
    await other.stillWorks()
  })

  test('[fbroker] a WebSocket close frame from the client is answered with a close frame and the connection ends', async (t) => {
    const ws = await openWs(t, 'ws')
    await ws.handshake(uid('close'))
    const code = Buffer.alloc(2)
    code.writeUInt16BE(1000)
    ws.sendFrame(OP.close, code)
    await assertClosed(ws, 'client close')
    assert.equal(ws.closeCode, 1000)
  })
})
