// The persistence journal through the memory backend: two brokers in one
// process share a MemoryPersistence, so the second restores what the first
// stored — the same code path as Redis (journal batches, bridge,
// DurableWriter, restore), without a Redis.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt, { type MqttClient } from 'mqtt'
import { Broker, ConfigError, MemoryPersistence } from 'fbroker'
import { target } from '../helpers/broker'

const skip = target === 'mosquitto' ? 'fbroker persistence options' : false

async function connect(port: number, clientId: string, clean: boolean): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, clean, reconnectPeriod: 0 })
  const ack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  })
  return { client, sessionPresent: ack.sessionPresent }
}

describe('persistence through the memory backend', { skip }, () => {
  test('[fbroker] a second broker over the same backend restores the session, its queue (QoS 1 and 2, in order), its subscription and the retained message', async () => {
    const backend = new MemoryPersistence()
    let broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false, persistenceBackend: backend })
    const sub = await connect(broker.port, 'mem-sub', false)
    await sub.client.subscribeAsync('m/#', { qos: 2 })
    await sub.client.endAsync()
    const pub = await connect(broker.port, 'mem-pub', true)
    for (let i = 0; i < 300; i++) await pub.client.publishAsync('m/x', `n${i}`, { qos: i % 3 === 0 ? 2 : 1 })
    await pub.client.publishAsync('state/a', 'kept', { qos: 1, retain: true })
    await pub.client.endAsync()
    await broker.close()
    const stored = await backend.load()
    assert.deepEqual(
      stored.sessions.map((s) => [s.clientId, s.queue.length, s.subscriptions.map((x) => x.filter)]),
      [['mem-sub', 300, ['m/#']]],
      'the backend holds the offline session with its 300 queued messages',
    )

    broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false, persistenceBackend: backend })
    const got: string[] = []
    const again = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, { clientId: 'mem-sub', clean: false, reconnectPeriod: 0 })
    again.on('message', (_t, payload) => got.push(payload.toString()))
    const present = await new Promise<boolean>((resolve) => again.once('connect', (ack) => resolve(ack.sessionPresent)))
    assert.equal(present, true, 'session present after the restart')
    const deadline = Date.now() + 10_000
    while (got.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    // MQTT.js emits a QoS 2 message only at PUBREL, so QoS 1 and QoS 2
    // interleave differently on the client side: order is checked per QoS.
    const expected = Array.from({ length: 300 }, (_, i) => `n${i}`)
    assert.deepEqual([...got].sort(), [...expected].sort(), 'every queued message, once')
    const isQos2 = (id: string) => Number(id.slice(1)) % 3 === 0
    assert.deepEqual(got.filter(isQos2), expected.filter(isQos2), 'QoS 2 messages in publish order')
    assert.deepEqual(
      got.filter((id) => !isQos2(id)),
      expected.filter((id) => !isQos2(id)),
      'QoS 1 messages in publish order',
    )
    await again.endAsync()

    const late = await connect(broker.port, 'mem-late', true)
    const retained = await new Promise<string>((resolve) => {
      late.client.once('message', (topic, payload, packet) => resolve(`${topic}=${payload} retain=${packet.retain}`))
      void late.client.subscribeAsync('state/#')
    })
    assert.equal(retained, 'state/a=kept retain=true')
    await late.client.endAsync()
    await broker.close()
    // Acknowledged deliveries left the store: nothing is queued or in flight any more.
    const after = await backend.load()
    assert.deepEqual(after.sessions.map((s) => [s.clientId, s.queue.length, s.inflight.length]), [['mem-sub', 0, 0]])
  })

  test('[fbroker] persistence: redis without a Redis is a ConfigError naming redisUrl (Broker options are camelCase)', async () => {
    await assert.rejects(Broker.start({ host: '127.0.0.1', port: 0, logger: false, persistence: 'redis' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.message, 'config error in Broker options: key "redisUrl": required when persistence is redis (or set redisSentinels or redisClusterNodes)')
      return true
    })
    await assert.rejects(
      Broker.start({ host: '127.0.0.1', port: 0, logger: false, persistence: 'redis', redisSentinels: ['a:1'], redisClusterNodes: ['b:2'] }),
      /key "redisClusterNodes": cannot be combined with redisSentinels/,
    )
  })
})
