// Opt-in per-message events: produced in Rust only while listened to,
// filtered by topic in Rust, delivered to JS in batches.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { Broker, type PublishedEvent, type DeliveryEvent, type ClientErrorEvent } from 'fbroker'
import { RawClient } from '../helpers/raw'

const settle = () => new Promise((r) => setTimeout(r, 150))

test('[fbroker] published events are opt-in and filtered by topic in Rust', async () => {
  const broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false })
  try {
    const url = `mqtt://127.0.0.1:${broker.port}`
    const pub = await mqtt.connectAsync(url, { clientId: 'ev-pub', reconnectPeriod: 0 })
    await settle()
    const before = broker.stats().eventsDelivered
    await pub.publishAsync('watched/a', 'x', { qos: 1 })
    await settle()
    assert.equal(broker.stats().eventsDelivered, before, 'no listener: no per-message event was produced')

    const seen: PublishedEvent[] = []
    broker.setMessageEventFilters(['watched/#'])
    broker.on('published', (e) => seen.push(e))
    await Promise.resolve()
    await pub.publishAsync('watched/b', 'hello', { qos: 1, retain: true })
    await pub.publishAsync('other/c', 'not watched', { qos: 0 })
    await settle()
    assert.equal(seen.length, 1)
    assert.deepEqual({ ...seen[0], payload: seen[0].payload.toString() }, {
      clientId: 'ev-pub',
      topic: 'watched/b',
      payload: 'hello',
      qos: 1,
      retain: true,
    })
    assert.equal(broker.stats().eventsDelivered, before + 1, 'the unwatched topic never crossed the FFI')
    await pub.endAsync()
  } finally {
    await broker.close()
  }
})

test('[fbroker] delivered and acked events follow a QoS 1 delivery', async () => {
  const broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false })
  try {
    const url = `mqtt://127.0.0.1:${broker.port}`
    const delivered: DeliveryEvent[] = []
    const acked: DeliveryEvent[] = []
    broker.on('delivered', (e) => delivered.push(e))
    broker.on('acked', (e) => acked.push(e))
    const sub = await mqtt.connectAsync(url, { clientId: 'ev-sub', reconnectPeriod: 0 })
    await sub.subscribeAsync('d/#', { qos: 1 })
    const got = new Promise((r) => sub.once('message', r))
    await broker.publish('d/x', 'payload', { qos: 1 })
    await got
    await settle()
    assert.equal(delivered.length, 1)
    assert.equal(delivered[0].clientId, 'ev-sub')
    assert.equal(delivered[0].topic, 'd/x')
    assert.equal(delivered[0].qos, 1)
    assert.ok(delivered[0].packetId > 0)
    assert.deepEqual(acked, delivered, 'the PUBACK completed the same delivery')
    await sub.endAsync()
  } finally {
    await broker.close()
  }
})

test('[fbroker] clientError reports a protocol violation with the client id', async () => {
  const broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false })
  try {
    const errors: ClientErrorEvent[] = []
    broker.on('clientError', (e) => errors.push(e))
    await Promise.resolve()
    const c = await RawClient.connect(broker.port)
    await c.handshake({ clientId: 'ev-bad' })
    c.send({ cmd: 'publish', topic: 'a/+', payload: 'wildcard', qos: 0 })
    assert.equal(await c.closesWithin(2000), true)
    await settle()
    assert.equal(errors.length, 1)
    assert.equal(errors[0].clientId, 'ev-bad')
    assert.match(errors[0].message, /invalid topic name/)
  } finally {
    await broker.close()
  }
})
