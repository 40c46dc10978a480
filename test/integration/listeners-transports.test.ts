// One broker, four listeners (tcp, tls, ws, wss), real MQTT.js clients on
// each: publish and subscribe over every transport, and messages (retained
// ones included) crossing from one listener to another. The same suite runs
// twice: the broker started by the CLI from one config file, and by
// `Broker.start` with the `listeners` option.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { target } from '../helpers/broker'
import { startCli, type CliBroker } from '../helpers/cli-broker'
import { uid } from '../helpers/clients'
import { connectVia, inbox, type ListenerProtocol } from '../helpers/listeners'
import { makeCerts } from '../helpers/tls'

const skip = target === 'mosquitto' && 'fbroker listeners configuration'
const certs = makeCerts({ prefix: 'listeners-transports' })
const PROTOCOLS: ListenerProtocol[] = ['tcp', 'tls', 'ws', 'wss']

type Ports = Record<ListenerProtocol, number>

function transportTests(ports: () => Ports) {
  for (const protocol of ['tls', 'ws', 'wss'] as const) {
    const scheme = { tls: 'mqtts', ws: 'ws', wss: 'wss' }[protocol]
    test(`[fbroker] MQTT.js over ${scheme}:// subscribes and gets its own QoS 0, 1 and 2 publishes back`, async (t) => {
      const c = await connectVia(t, protocol, ports()[protocol], certs)
      const box = inbox(c)
      const base = uid(`${protocol}/`)
      await c.subscribeAsync(`${base}/#`, { qos: 2 })
      for (const qos of [0, 1, 2] as const) await c.publishAsync(`${base}/q${qos}`, `over ${protocol} at ${qos}`, { qos })
      await box.count(3)
      assert.deepEqual(
        box.got.map((m) => `${m.topic} ${m.payload} q${m.qos}`).sort(),
        [0, 1, 2].map((q) => `${base}/q${q} over ${protocol} at ${q} q${q}`),
      )
    })
  }

  test('[fbroker] a TCP publisher reaches a WSS subscriber', async (t) => {
    const sub = await connectVia(t, 'wss', ports().wss, certs)
    const box = inbox(sub)
    const topic = uid('cross/tcp-wss/')
    await sub.subscribeAsync(topic, { qos: 1 })
    const pub = await connectVia(t, 'tcp', ports().tcp)
    await pub.publishAsync(topic, 'from tcp', { qos: 1 })
    const m = await box.topic(topic)
    assert.deepEqual(m, { topic, payload: 'from tcp', qos: 1, retain: false })
  })

  test('[fbroker] a WS publisher reaches a TLS subscriber', async (t) => {
    const sub = await connectVia(t, 'tls', ports().tls, certs)
    const box = inbox(sub)
    const topic = uid('cross/ws-tls/')
    await sub.subscribeAsync(topic, { qos: 2 })
    const pub = await connectVia(t, 'ws', ports().ws)
    await pub.publishAsync(topic, 'from ws', { qos: 2 })
    const m = await box.topic(topic)
    assert.deepEqual(m, { topic, payload: 'from ws', qos: 2, retain: false })
  })

  test('[MQTT-3.3.1-6] [MQTT-3.3.1-8] a message retained over TLS is sent, flagged retained, to a later WS subscriber', async (t) => {
    const topic = uid('cross/retained/')
    const pub = await connectVia(t, 'tls', ports().tls, certs)
    await pub.publishAsync(topic, 'kept over tls', { qos: 1, retain: true })
    const sub = await connectVia(t, 'ws', ports().ws)
    const box = inbox(sub)
    await sub.subscribeAsync(topic, { qos: 1 })
    const m = await box.topic(topic)
    assert.deepEqual(m, { topic, payload: 'kept over tls', qos: 1, retain: true })
    // Clear it so that it does not outlive the test.
    await pub.publishAsync(topic, '', { qos: 1, retain: true })
  })

  test('[fbroker] a 900 KiB message and a burst of 800 QoS 1 messages (under max_queued_messages) from a TCP client reach tls, ws and wss subscribers intact and in order', async (t) => {
    const base = uid('bulk/')
    const subs = await Promise.all((['tls', 'ws', 'wss'] as const).map((p) => connectVia(t, p, ports()[p], certs)))
    const boxes = subs.map((c) => inbox(c))
    const bigs: Buffer[] = []
    subs.forEach((c, k) => c.on('message', (topic, payload) => topic === `${base}/big` && (bigs[k] = Buffer.from(payload))))
    await Promise.all(subs.map((c) => c.subscribeAsync(`${base}/#`, { qos: 1 })))
    const pub = await connectVia(t, 'tcp', ports().tcp)
    const big = Buffer.alloc(900 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
    await pub.publishAsync(`${base}/big`, big, { qos: 1 })
    const N = 800
    await Promise.all(Array.from({ length: N }, (_, i) => pub.publishAsync(`${base}/n`, `m${i}`, { qos: 1 })))
    for (const [k, box] of boxes.entries()) {
      await box.count(N + 1, 20_000)
      const name = ['tls', 'ws', 'wss'][k]
      assert.ok(bigs[k]?.equals(big), `${name}: the big message arrived intact (${bigs[k]?.length} bytes)`)
      assert.deepEqual(
        box.got.filter((m) => m.topic === `${base}/n`).map((m) => m.payload),
        Array.from({ length: N }, (_, i) => `m${i}`),
        `${name}: the burst, in order`,
      )
    }
  })

  test('[fbroker] every listener reaches every listener: one client on each publishes once, each of the four receives all four messages', async (t) => {
    const base = uid('mesh/')
    const clients = await Promise.all(PROTOCOLS.map((p) => connectVia(t, p, ports()[p], certs)))
    const boxes = clients.map((c) => inbox(c))
    await Promise.all(clients.map((c) => c.subscribeAsync(`${base}/#`, { qos: 1 })))
    await Promise.all(clients.map((c, i) => c.publishAsync(`${base}/${PROTOCOLS[i]}`, `hello from ${PROTOCOLS[i]}`, { qos: 1 })))
    const expected = PROTOCOLS.map((p) => `${base}/${p} hello from ${p}`).sort()
    for (const [i, box] of boxes.entries()) {
      await box.count(4)
      assert.deepEqual(box.got.map((m) => `${m.topic} ${m.payload}`).sort(), expected, `received on the ${PROTOCOLS[i]} listener`)
    }
  })
}

describe('four listeners from one config file, through the CLI', { skip }, () => {
  let cli: CliBroker | undefined
  let ports: Ports | undefined
  before(async () => {
    // Relative certificate paths: resolved against the config file's directory.
    const file = join(certs.dir, 'fbroker.yaml')
    writeFileSync(
      file,
      [
        'host: 127.0.0.1',
        'listeners:',
        '  - { type: tcp, port: 0 }',
        '  - { type: tls, port: 0, cert: server.pem, key: server.key }',
        '  - { type: ws, port: 0, path: /mqtt, allowed_origins: [] }',
        '  - { type: wss, port: 0, cert: server.pem, key: server.key, max_connections: 100, proxy_protocol: false }',
        '',
      ].join('\n'),
    )
    cli = await startCli(['-c', file])
    const only = (p: ListenerProtocol) => {
      const found = cli!.of(p)
      assert.equal(found.length, 1, `one ${p} listener in the banner: ${JSON.stringify(cli!.listeners)}`)
      return found[0]!.port
    }
    ports = { tcp: only('tcp'), tls: only('tls'), ws: only('ws'), wss: only('wss') }
  })
  after(async () => {
    if (cli) assert.equal(await cli.stop(), 0, `fbroker exit code; stderr: ${cli.stderr()}`)
  })

  test('[fbroker] the banner lists exactly the four listeners of the file, with client URLs', () => {
    assert.deepEqual(
      cli!.listeners.map((l) => l.url),
      [`mqtt://127.0.0.1:${ports!.tcp}`, `mqtts://127.0.0.1:${ports!.tls}`, `ws://127.0.0.1:${ports!.ws}/mqtt`, `wss://127.0.0.1:${ports!.wss}/mqtt`],
    )
  })

  transportTests(() => ports!)
})

describe('four listeners through Broker.start({ listeners })', { skip }, () => {
  let broker: any
  let ports: Ports | undefined
  before(async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      listeners: [
        { type: 'tcp', port: 0 },
        { type: 'tls', port: 0, cert: certs.cert, key: certs.key },
        { type: 'ws', port: 0, path: '/mqtt' },
        { type: 'wss', port: 0, cert: certs.cert, key: certs.key, maxConnections: 100 },
      ],
    })
    const bound: Array<{ protocol: ListenerProtocol; port: number }> = broker.boundListeners
    assert.deepEqual(
      bound.map((l) => l.protocol),
      PROTOCOLS,
      'boundListeners: the four listeners, in order, and no default TCP listener',
    )
    ports = Object.fromEntries(bound.map((l) => [l.protocol, l.port])) as Ports
  })
  after(() => broker?.close())

  transportTests(() => ports!)
})
