// Lifecycle events cross the FFI only while someone listens to them: the
// engine counts every event it hands to JS (stats().eventsDelivered).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { Broker } from 'fbroker'

const settle = () => new Promise((r) => setTimeout(r, 150))

test('[fbroker] lifecycle events are produced only while a listener is attached', async () => {
  const broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false })
  try {
    const url = `mqtt://127.0.0.1:${broker.port}`
    await settle()
    const before = broker.stats().eventsDelivered
    const quiet = await mqtt.connectAsync(url, { clientId: 'unobserved', reconnectPeriod: 0 })
    await quiet.subscribeAsync('a/b')
    await quiet.endAsync()
    await settle()
    assert.equal(broker.stats().eventsDelivered, before, 'no listener: nothing crossed the FFI')

    const seen: string[] = []
    broker.on('clientConnected', (e) => seen.push(e.clientId))
    await Promise.resolve()
    const watched = await mqtt.connectAsync(url, { clientId: 'observed', reconnectPeriod: 0 })
    await settle()
    assert.deepEqual(seen, ['observed'])
    assert.equal(broker.stats().eventsDelivered, before + 1, 'only the listened-to kind crossed')
    await watched.endAsync()
  } finally {
    await broker.close()
  }
})
