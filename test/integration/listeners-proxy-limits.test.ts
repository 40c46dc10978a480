// PROXY protocol listeners (HAProxy v1 text and v2 binary headers, in front
// of TCP, WebSocket and TLS) and per-listener max_connections.
import { after, afterEach, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { target } from '../helpers/broker'
import { closeAll, track, uid } from '../helpers/clients'
import { connectVia, inbox } from '../helpers/listeners'
import { RawClient } from '../helpers/raw'
import { makeCerts } from '../helpers/tls'
import { sleep, waitUntil } from '../helpers/wait'
import { connectPacket, mqttBytes } from '../helpers/ws'

const skip = target === 'mosquitto' && 'fbroker listeners configuration'
const certs = makeCerts({ prefix: 'listeners-proxy' })

/** A raw TCP socket whose received bytes and close are observable; destroyed when the test ends. */
async function rawSocket(t: TestContext, port: number) {
  const s: Socket = netConnect(port, '127.0.0.1')
  t.after(() => s.destroy())
  s.setNoDelay(true)
  s.on('error', () => {})
  let received = Buffer.alloc(0)
  s.on('data', (d: Buffer) => (received = Buffer.concat([received, d])))
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve())
    s.once('error', reject)
  })
  let isClosed = false
  const closed = new Promise<void>((resolve) => s.once('close', () => ((isClosed = true), resolve())))
  return {
    s,
    received: () => received,
    isClosed: () => isClosed,
    async closesWithin(ms: number): Promise<boolean> {
      let timer: NodeJS.Timeout | undefined
      const r = await Promise.race([closed.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))])
      clearTimeout(timer)
      return r
    },
    /** Waits for a CONNACK (0x20 0x02 …) and returns its return code. */
    async connack(ms = 2000): Promise<number> {
      await waitUntil(() => received.length >= 4 || isClosed, ms)
      assert.ok(received.length >= 4, `no CONNACK (got ${received.toString('hex') || 'nothing'}${isClosed ? ', connection closed' : ''})`)
      assert.equal(received[0], 0x20, `expected CONNACK, got ${received.toString('hex')}`)
      return received[3]!
    },
  }
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** A PROXY v2 PROXY-command header for TCP over IPv4. */
function proxyV2Ipv4(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const addr = Buffer.alloc(12)
  src.split('.').forEach((o, i) => (addr[i] = Number(o)))
  dst.split('.').forEach((o, i) => (addr[4 + i] = Number(o)))
  addr.writeUInt16BE(srcPort, 8)
  addr.writeUInt16BE(dstPort, 10)
  const head = Buffer.from([0x21, 0x11, 0x00, addr.length]) // v2 PROXY, AF_INET STREAM, length
  return Buffer.concat([V2_SIGNATURE, head, addr])
}

/** A PROXY v2 LOCAL header (the balancer's own health check). */
function proxyV2Local(): Buffer {
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])])
}

describe('PROXY protocol listeners', { skip }, () => {
  let broker: any
  const port = { tcp: 0, ws: 0, tls: 0 }
  const connected: Array<{ clientId: string; address: string }> = []
  before(async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      connectTimeoutMs: 1500,
      listeners: [
        { type: 'tcp', port: 0, proxyProtocol: true },
        { type: 'ws', port: 0, proxyProtocol: true },
        { type: 'tls', port: 0, proxyProtocol: true, cert: certs.cert, key: certs.key },
      ],
    })
    broker.on('clientConnected', (e: any) => connected.push(e))
    const bound: Array<{ protocol: 'tcp' | 'ws' | 'tls'; port: number; proxyProtocol?: boolean }> = broker.boundListeners
    for (const l of bound) {
      port[l.protocol] = l.port
      assert.equal(l.proxyProtocol, true)
    }
    await sleep(50) // let the event interest reach the engine
  })
  after(() => broker?.close())

  async function addressOf(clientId: string): Promise<string> {
    await waitUntil(() => connected.some((e) => e.clientId === clientId), 2000)
    const e = connected.find((c) => c.clientId === clientId)
    assert.ok(e, `no clientConnected event for ${clientId}`)
    return e.address
  }

  test('[fbroker] a PROXY v1 line before CONNECT: clientConnected reports the address it carries (203.0.113.7:5555)', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const clientId = uid('v1-')
    c.s.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 5555 1883\r\n'), mqttBytes(connectPacket(clientId))]))
    assert.equal(await c.connack(), 0)
    assert.equal(await addressOf(clientId), '203.0.113.7:5555')
  })

  test('[fbroker] a PROXY v1 header split over several TCP segments, then CONNECT in another', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const clientId = uid('v1split-')
    const line = Buffer.from('PROXY TCP4 198.51.100.20 127.0.0.1 40000 1883\r\n')
    for (const part of [line.subarray(0, 3), line.subarray(3, 20), line.subarray(20)]) {
      c.s.write(part)
      await sleep(30)
    }
    c.s.write(mqttBytes(connectPacket(clientId)))
    assert.equal(await c.connack(), 0)
    assert.equal(await addressOf(clientId), '198.51.100.20:40000')
  })

  test('[fbroker] a PROXY v1 TCP6 line: the IPv6 source address is reported', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const clientId = uid('v1six-')
    c.s.write(Buffer.concat([Buffer.from('PROXY TCP6 2001:db8::7 ::1 6000 1883\r\n'), mqttBytes(connectPacket(clientId))]))
    assert.equal(await c.connack(), 0)
    assert.equal(await addressOf(clientId), '[2001:db8::7]:6000')
  })

  test('[fbroker] a PROXY v2 header (IPv4): clientConnected reports its source address', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const clientId = uid('v2-')
    c.s.write(Buffer.concat([proxyV2Ipv4('192.0.2.44', 4242, '127.0.0.1', 1883), mqttBytes(connectPacket(clientId))]))
    assert.equal(await c.connack(), 0)
    assert.equal(await addressOf(clientId), '192.0.2.44:4242')
  })

  test('[fbroker] a PROXY v2 LOCAL header (health check) is accepted and the socket\'s own address stands', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const clientId = uid('local-')
    c.s.write(Buffer.concat([proxyV2Local(), mqttBytes(connectPacket(clientId))]))
    assert.equal(await c.connack(), 0)
    assert.equal(await addressOf(clientId), `127.0.0.1:${c.s.localPort}`)
  })

  test('[fbroker] without the header, or with a malformed one, the connection is closed without a CONNACK; a proxied client on the same listener keeps working', async (t) => {
    const ok = await rawSocket(t, port.tcp)
    ok.s.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.8 127.0.0.1 5556 1883\r\n'), mqttBytes(connectPacket(uid('ok-')))]))
    assert.equal(await ok.connack(), 0)
    const before = connected.length
    for (const bytes of [
      mqttBytes(connectPacket(uid('nohdr-'))),
      Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 5555 1883\r\n'), mqttBytes(connectPacket(uid('bad-')))]), // addresses missing
      Buffer.concat([Buffer.from('PROXY TCP4 999.0.113.7 127.0.0.1 5555 1883\r\n'), mqttBytes(connectPacket(uid('bad-')))]),
      Buffer.from(`PROXY TCP4 203.0.113.7 127.0.0.1 5555 1883${' '.repeat(120)}\r\n`), // over 107 bytes
    ]) {
      const c = await rawSocket(t, port.tcp)
      c.s.write(bytes)
      assert.ok(await c.closesWithin(2000), `still open after ${JSON.stringify(bytes.toString('latin1').slice(0, 60))}`)
      assert.equal(c.received().length, 0, `the broker answered ${c.received().toString('hex')}`)
    }
    assert.equal(connected.length, before, 'no clientConnected event for the refused connections')
    // The proxied connection is unaffected: PINGREQ still answered.
    ok.s.write(Buffer.from([0xc0, 0x00]))
    await waitUntil(() => ok.received().length >= 6, 2000)
    assert.deepEqual([...ok.received().subarray(4, 6)], [0xd0, 0x00], 'PINGRESP')
  })

  test('[fbroker] a ws listener with proxy_protocol: the PROXY line comes before the HTTP upgrade and its address is reported', async (t) => {
    const c = await rawSocket(t, port.ws)
    const clientId = uid('wsproxy-')
    c.s.write(
      'PROXY TCP4 203.0.113.70 127.0.0.1 7070 80\r\n' +
        'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
    )
    await waitUntil(() => c.received().includes('\r\n\r\n'), 2000)
    assert.match(c.received().toString('latin1'), /^HTTP\/1\.1 101 /)
    // A masked binary frame carrying CONNECT.
    const connect = mqttBytes(connectPacket(clientId))
    const mask = [1, 2, 3, 4]
    c.s.write(Buffer.concat([Buffer.from([0x82, 0x80 | connect.length, ...mask]), Buffer.from(connect.map((b, i) => b ^ mask[i % 4]!))]))
    assert.equal(await addressOf(clientId), '203.0.113.70:7070')
  })

  test('[fbroker] a tls listener with proxy_protocol: the PROXY line comes before the TLS handshake and its address is reported', async (t) => {
    const c = await rawSocket(t, port.tls)
    c.s.write('PROXY TCP4 203.0.113.80 127.0.0.1 8080 8883\r\n')
    const clientId = uid('tlsproxy-')
    const s = tlsConnect({ socket: c.s, servername: 'localhost', ca: certs.read().ca })
    t.after(() => s.destroy())
    s.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      s.once('secureConnect', () => resolve())
      s.once('error', reject)
    })
    s.write(mqttBytes(connectPacket(clientId)))
    assert.equal(await addressOf(clientId), '203.0.113.80:8080')
  })

  test('[fbroker] a connection that sends nothing is closed after connect_timeout_ms, waiting for its PROXY header', async (t) => {
    const c = await rawSocket(t, port.tcp)
    const started = Date.now()
    assert.ok(await c.closesWithin(5000), 'still open 5 s later (connect_timeout_ms is 1500)')
    assert.ok(Date.now() - started >= 1000, `closed after only ${Date.now() - started} ms`)
  })
})

describe('per-listener max_connections', { skip }, () => {
  let broker: any
  const port = { capped: 0, other: 0, ws: 0 }
  before(async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      listeners: [
        { type: 'tcp', port: 0, maxConnections: 2 },
        { type: 'tcp', port: 0 },
        { type: 'ws', port: 0, maxConnections: 1 },
      ],
    })
    const bound: Array<{ port: number; maxConnections?: number }> = broker.boundListeners
    assert.deepEqual(bound.map((l) => l.maxConnections), [2, 0, 1])
    port.capped = bound[0]!.port
    port.other = bound[1]!.port
    port.ws = bound[2]!.port
  })
  afterEach(closeAll)
  after(() => broker?.close())

  /** Opens a raw connection and reports whether CONNECT is answered with CONNACK 0 (false: closed without one). */
  async function tryConnect(p: number): Promise<{ accepted: boolean; client?: RawClient }> {
    let c: RawClient
    try {
      c = track(await RawClient.connect(p))
    } catch {
      return { accepted: false }
    }
    try {
      const ack = await c.handshake({ clientId: uid('cap-') })
      return { accepted: ack.returnCode === 0, client: c }
    } catch {
      c.destroy()
      return { accepted: false }
    }
  }

  test('[fbroker] with max_connections: 2 on a listener, the third connection there is closed without a CONNACK while another listener still accepts; a freed slot is reused', async () => {
    const first = await tryConnect(port.capped)
    const second = await tryConnect(port.capped)
    assert.equal(first.accepted, true)
    assert.equal(second.accepted, true)
    const third = await tryConnect(port.capped)
    assert.equal(third.accepted, false, 'the third connection on the capped listener was accepted')
    // The other listener is not capped by it.
    for (let i = 0; i < 3; i++) assert.equal((await tryConnect(port.other)).accepted, true, `connection ${i + 1} on the other listener`)
    // The first two still work.
    for (const c of [first.client!, second.client!]) {
      c.send({ cmd: 'pingreq' })
      assert.equal((await c.next())?.cmd, 'pingresp')
    }
    // Closing one frees its slot.
    first.client!.send({ cmd: 'disconnect' })
    await first.client!.closesWithin(1000)
    let again = { accepted: false }
    const deadline = Date.now() + 2000
    while (!again.accepted && Date.now() < deadline) {
      again = await tryConnect(port.capped)
      if (!again.accepted) await sleep(50)
    }
    assert.equal(again.accepted, true, 'a connection after one of the two left')
  })

  test('[fbroker] max_connections: 1 on a ws listener: a second WebSocket client is refused while the first keeps working', async (t) => {
    const first = await connectVia(t, 'ws', port.ws)
    const box = inbox(first)
    await first.subscribeAsync('cap/ws', { qos: 1 })
    let refused = false
    try {
      const second = await connectVia(t, 'ws', port.ws, undefined, { connectTimeout: 2000 })
      second.end(true)
    } catch {
      refused = true
    }
    assert.equal(refused, true, 'the second WebSocket client connected')
    await first.publishAsync('cap/ws', 'first still works', { qos: 1 })
    await box.count(1)
  })
})
