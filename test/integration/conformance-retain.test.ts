// MQTT 3.1.1 conformance: retained messages (3.3.1.3, statements
// MQTT-3.3.1-5 to MQTT-3.3.1-12).
//
// Every test is named after the normative statement it checks; `[fbroker]`
// marks requirements of our issue that the standard leaves open.
import { afterEach, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, target } from '../helpers/broker'
import type { RawPacket } from '../helpers/raw'
import { closeAll, uid } from '../helpers/clients'
import { texts } from '../helpers/packets'
import { Peer } from '../helpers/peer'

// ---------------------------------------------------------------- helpers

/**
 * What a new subscription to `filter` is sent on arrival: subscribes, then
 * subscribes to a marker topic holding a retained message of its own, and
 * returns every PUBLISH received before the marker's.
 */
async function retainedFor(port: number, filter: string, qos: 0 | 1 | 2 = 1): Promise<RawPacket[]> {
  const end = `zz-ret-end/${uid()}`
  const pub = await Peer.open(port)
  await pub.publish(end, 'end', { qos: 1, retain: true })
  const sub = await Peer.open(port)
  try {
    await sub.subscribe([[filter, qos]])
    await sub.subscribe([[end, 0]])
    return await sub.drainUntil(end)
  } finally {
    await pub.publish(end, '', { qos: 1, retain: true })
    sub.destroy()
    pub.destroy()
  }
}

const summary = (ps: RawPacket[]) =>
  ps.map((p) => ({ topic: p.topic, payload: p.payload.toString(), qos: p.qos, retain: p.retain })).sort((x, y) => (x.topic < y.topic ? -1 : x.topic > y.topic ? 1 : 0))

// ------------------------------------------------------------------ tests

describe('MQTT 3.1.1 §3.3.1.3: retained messages', () => {
  const b = brokerForSuite({}, closeAll)
  afterEach(closeAll)

  test('[MQTT-3.3.1-5] a retained message is stored with its QoS and delivered to a later subscriber, after its publisher has gone', async () => {
    const base = `ret5/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/q0`, 'zero', { qos: 0, retain: true })
    await pub.publish(`${base}/q1`, 'one', { qos: 1, retain: true })
    await pub.publish(`${base}/q2`, 'two', { qos: 2, retain: true })
    await pub.ping()
    pub.destroy()
    assert.deepEqual(summary(await retainedFor(b.port, `${base}/+`, 2)), [
      { topic: `${base}/q0`, payload: 'zero', qos: 0, retain: true },
      { topic: `${base}/q1`, payload: 'one', qos: 1, retain: true },
      { topic: `${base}/q2`, payload: 'two', qos: 2, retain: true },
    ])
  })

  test('[MQTT-3.3.1-5] a new retained message on a topic replaces the stored one', async () => {
    const t = `ret5r/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'first', { qos: 1, retain: true })
    await pub.publish(t, 'second', { qos: 2, retain: true })
    assert.deepEqual(summary(await retainedFor(b.port, t, 2)), [{ topic: t, payload: 'second', qos: 2, retain: true }])
  })

  test('[MQTT-3.8.4-6] a retained message is sent at the minimum of its stored QoS and the granted QoS', async () => {
    const base = `ret-minqos/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/q2`, 'two', { qos: 2, retain: true })
    await pub.publish(`${base}/q1`, 'one', { qos: 1, retain: true })
    for (const granted of [0, 1] as const) {
      const got = summary(await retainedFor(b.port, `${base}/+`, granted))
      assert.deepEqual(
        got.map((m) => [m.topic, m.qos]),
        [
          [`${base}/q1`, Math.min(1, granted)],
          [`${base}/q2`, granted],
        ],
        `subscription granted QoS ${granted}`,
      )
    }
  })

  test('[MQTT-3.3.1-6] a new subscription is sent the last retained message of every matching topic, wildcards included', async () => {
    const base = `ret6/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(base, 'parent', { qos: 1, retain: true })
    await pub.publish(`${base}/a`, 'a1', { qos: 1, retain: true })
    await pub.publish(`${base}/a`, 'a2', { qos: 1, retain: true })
    await pub.publish(`${base}/b`, 'b1', { qos: 0, retain: true })
    await pub.publish(`${base}/c/d`, 'cd', { qos: 2, retain: true })
    await pub.publish(`${base}x/a`, 'elsewhere', { qos: 1, retain: true })
    await pub.publish(`${base}/n`, 'not retained', { qos: 1 })
    await pub.ping()
    const payloads = async (filter: string) => texts(await retainedFor(b.port, filter)).sort()
    assert.deepEqual(await payloads(`${base}/a`), ['a2'])
    assert.deepEqual(await payloads(`${base}/+`), ['a2', 'b1'])
    assert.deepEqual(await payloads(`${base}/#`), ['a2', 'b1', 'cd', 'parent'])
    assert.deepEqual(await payloads(`${base}/+/d`), ['cd'])
    assert.deepEqual(await payloads(`${base}/zzz`), [])
  })

  test('[MQTT-3.3.1-7] a retained QoS 0 message discards the previously retained message and is stored in its place', async () => {
    const t = `ret7/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'old', { qos: 1, retain: true })
    await pub.publish(t, 'new', { qos: 0, retain: true })
    await pub.ping()
    // fbroker keeps retained QoS 0 messages (the standard says SHOULD)
    assert.deepEqual(summary(await retainedFor(b.port, t, 2)), [{ topic: t, payload: 'new', qos: 0, retain: true }])
  })

  test('[MQTT-3.3.1-8] a message sent because of a new subscription has RETAIN=1, whatever the subscription QoS', async () => {
    const t = `ret8/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'kept', { qos: 2, retain: true })
    for (const qos of [0, 1, 2] as const) {
      const got = await retainedFor(b.port, t, qos)
      assert.equal(got.length, 1)
      assert.equal(got[0].retain, true, `subscription QoS ${qos}`)
    }
  })

  test('[MQTT-3.3.1-9] a message forwarded to an established subscription has RETAIN=0, even when published with RETAIN=1', async () => {
    const t = `ret9/${uid()}`
    const sub = await Peer.open(b.port)
    const pub = await Peer.open(b.port)
    await sub.subscribe([[t, 2]])
    for (const qos of [0, 1, 2] as const) await pub.publish(t, `r${qos}`, { qos, retain: true })
    await pub.publish(t, 'plain', { qos: 1 })
    const got = await sub.take(4)
    assert.deepEqual(
      got.map((p) => [p.payload.toString(), p.retain]),
      [
        ['r0', false],
        ['r1', false],
        ['r2', false],
        ['plain', false],
      ],
    )
    await pub.publish(t, '', { qos: 1, retain: true })
  })

  test('[MQTT-3.3.1-10] a zero-length retained PUBLISH reaches current subscribers and removes the retained message', async () => {
    const t = `ret10/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(t, 'old', { qos: 1, retain: true })
    const sub = await Peer.open(b.port)
    await sub.subscribe([[t, 1]])
    assert.deepEqual(texts(await sub.take(1)), ['old'])
    await pub.publish(t, '', { qos: 1, retain: true })
    const [empty] = await sub.take(1)
    assert.equal(empty.topic, t)
    assert.equal(empty.payload.length, 0, 'processed as a normal message, delivered with its empty payload')
    assert.equal(empty.retain, false)
    assert.deepEqual(await retainedFor(b.port, t), [], 'no retained message for a later subscriber')
    assert.deepEqual(await retainedFor(b.port, `${t.split('/')[0]}/+`), [], 'nor for a wildcard one')
  })

  test('[MQTT-3.3.1-11] a zero-length retained message is never stored as a retained message', async () => {
    const base = `ret11/${uid()}`
    const pub = await Peer.open(b.port)
    for (const qos of [0, 1, 2] as const) await pub.publish(`${base}/q${qos}`, '', { qos, retain: true })
    await pub.ping()
    assert.deepEqual(await retainedFor(b.port, `${base}/#`), [])
  })

  test('[MQTT-3.3.1-12] a PUBLISH with RETAIN=0 neither stores a message nor removes or replaces the retained one', async () => {
    const base = `ret12/${uid()}`
    const pub = await Peer.open(b.port)
    await pub.publish(`${base}/kept`, 'retained', { qos: 1, retain: true })
    for (const qos of [0, 1, 2] as const) {
      await pub.publish(`${base}/kept`, `plain${qos}`, { qos })
      await pub.publish(`${base}/never`, `plain${qos}`, { qos })
    }
    await pub.publish(`${base}/kept`, '', { qos: 1 }) // zero-length but not retained: no deletion either
    await pub.ping()
    assert.deepEqual(summary(await retainedFor(b.port, `${base}/#`)), [{ topic: `${base}/kept`, payload: 'retained', qos: 1, retain: true }])
  })

  test(
    '[fbroker] Broker.publish with retain stores a retained message for later subscribers',
    { skip: target === 'mosquitto' && 'fbroker API (Broker.publish)' },
    async () => {
      const t = `ret-api/${uid()}`
      await b.broker.publish(t, Buffer.from('from the broker'), { qos: 1, retain: true })
      assert.deepEqual(summary(await retainedFor(b.port, t)), [{ topic: t, payload: 'from the broker', qos: 1, retain: true }])
      await b.broker.publish(t, Buffer.alloc(0), { qos: 0, retain: true })
      assert.deepEqual(await retainedFor(b.port, t), [])
    },
  )
})
