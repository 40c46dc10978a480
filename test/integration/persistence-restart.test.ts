// Redis persistence end to end: the `fbroker start` CLI with
// `--persistence redis` over a real redis-server (scripts/redis.sh, append
// only with fsync always), real MQTT.js clients. A persistent subscriber is
// offline while messages are published; the broker is stopped (SIGTERM) or
// killed (SIGKILL) and started again, or Redis goes away and comes back; the
// subscriber then gets what it is owed.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt, { type MqttClient } from 'mqtt'
import { Redis } from 'ioredis'
import { onPath, tempDir } from '../helpers/auth'
import { freePort, target } from '../helpers/broker'
import { startCli, type CliBroker } from '../helpers/cli-broker'
import { RawClient } from '../helpers/raw'
import { redisScript } from '../helpers/redis'

const missing = !onPath('redis-server') ? 'redis-server is not installed: apt-get install redis-server (CI installs it)' : false
const skip = target === 'mosquitto' ? 'fbroker persistence options' : missing

interface Received {
  id: string
  qos: number
  dup: boolean
}

function connect(url: string, clientId: string, clean: boolean): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { clientId, clean, reconnectPeriod: 0, connectTimeout: 5000 })
    client.once('connect', (ack) => resolve({ client, sessionPresent: ack.sessionPresent }))
    client.once('error', reject)
  })
}

/** Reconnects the persistent subscriber and collects until `expected` distinct ids arrived (or the time runs out). */
async function drain(
  url: string,
  clientId: string,
  expected: number | ((distinct: Set<string>) => boolean),
  timeoutMs: number,
): Promise<{ got: Received[]; sessionPresent: boolean }> {
  const complete = typeof expected === 'number' ? (d: Set<string>) => d.size >= expected : expected
  const got: Received[] = []
  const distinct = new Set<string>()
  let done: () => void = () => undefined
  const finished = new Promise<void>((resolve) => (done = resolve))
  const client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0 })
  let sessionPresent = false
  client.on('message', (_topic, payload, packet) => {
    const id = payload.toString()
    got.push({ id, qos: packet.qos, dup: packet.dup })
    distinct.add(id)
    if (complete(distinct)) done()
  })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', (ack) => {
      sessionPresent = ack.sessionPresent
      resolve()
    })
    client.once('error', reject)
  })
  const timer = setTimeout(done, timeoutMs)
  await finished
  clearTimeout(timer)
  // Let stragglers (duplicates) arrive before counting.
  await new Promise((r) => setTimeout(r, 300))
  await client.endAsync()
  return { got, sessionPresent }
}

/** Publishes `ids` with at most `window` unacknowledged; records the acknowledged ones. Stops at the first failure. */
async function publishAll(client: MqttClient, topic: string, ids: string[], qos: 1 | 2, window: number, acked: Set<string>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!
      await client.publishAsync(topic, id, { qos })
      acked.add(id)
    }
  }
  await Promise.all(Array.from({ length: window }, worker))
}

function firstOccurrenceInOrder(got: Received[], prefix: string): boolean {
  const seen = new Set<string>()
  let last = -1
  for (const r of got) {
    if (!r.id.startsWith(prefix) || seen.has(r.id)) continue
    seen.add(r.id)
    const n = Number(r.id.slice(prefix.length))
    if (n < last) return false
    last = n
  }
  return true
}

describe('Redis persistence across restarts, crashes and Redis outages', { skip }, () => {
  const dir = tempDir('persistence-restart')
  let redisPort = 0
  let redisUrl = ''
  let admin: Redis
  const prefix = 'test:persist:'
  const brokers: CliBroker[] = []

  const redisSh = (action: 'start' | 'stop') => redisScript(action, redisPort, dir, { durable: true })

  const start = async (env: Record<string, string> = {}): Promise<{ broker: CliBroker; url: string }> => {
    const broker = await startCli(['--host', '127.0.0.1', '--port', '0', '--persistence', 'redis', '--redis-url', redisUrl], {
      env: { FBROKER_PERSISTENCE_PREFIX: prefix, FBROKER_MAX_QUEUED_MESSAGES: '50000', FBROKER_LOG_LEVEL: 'info', ...env },
    })
    brokers.push(broker)
    return { broker, url: `mqtt://127.0.0.1:${broker.of('tcp')[0]!.port}` }
  }

  before(async () => {
    redisPort = await freePort()
    redisUrl = `redis://127.0.0.1:${redisPort}/0`
    redisSh('start')
    admin = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
    // The outage test stops Redis under this client too.
    admin.on('error', () => undefined)
    await admin.connect()
  })

  after(async () => {
    for (const b of brokers) await b.stop()
    admin?.disconnect()
    redisSh('stop')
  })

  test('[fbroker] restart (SIGTERM): 10,000 QoS 1 and 1,000 QoS 2 messages queued for an offline persistent session arrive after the restart, QoS 2 exactly once, in order; subscriptions and retained messages survive', async () => {
    let { broker, url } = await start()
    const sub = await connect(url, 'restart-sub', false)
    await sub.client.subscribeAsync('load/#', { qos: 2 })
    await sub.client.endAsync()

    const pub = await connect(url, 'restart-pub', true)
    const q1 = Array.from({ length: 10_000 }, (_, i) => `q1:${i}`)
    const q2 = Array.from({ length: 1_000 }, (_, i) => `q2:${i}`)
    const acked = new Set<string>()
    await publishAll(pub.client, 'load/q1', q1, 1, 1, acked)
    await publishAll(pub.client, 'load/q2', q2, 2, 1, acked)
    await pub.client.publishAsync('state/door', 'open', { qos: 1, retain: true })
    await pub.client.endAsync()
    assert.equal(acked.size, 11_000, 'every publish was acknowledged')
    // Connected when the broker stops: the broker closed it, so no will.
    const stayer = mqtt.connect(url, { clientId: 'restart-will', clean: false, reconnectPeriod: 0, will: { topic: 'load/will', payload: Buffer.from('will-term'), qos: 1, retain: false } })
    stayer.on('error', () => undefined)
    await new Promise((resolve) => stayer.once('connect', resolve))

    assert.equal(await broker.stop(), 0, 'SIGTERM exits 0')
    stayer.end(true)
    ;({ broker, url } = await start())
    await broker.waitFor(/restored 2 sessions and 1 retained messages/)

    const { got, sessionPresent } = await drain(url, 'restart-sub', 11_000, 60_000)
    assert.equal(sessionPresent, true, 'the session survived the restart')
    const ids = new Set(got.map((r) => r.id))
    assert.ok(!ids.has('will-term'), 'no will for a client the broker itself disconnected at SIGTERM')
    const missingIds = [...acked].filter((id) => !ids.has(id))
    assert.deepEqual(missingIds.slice(0, 10), [], `${missingIds.length} acknowledged messages were not delivered`)
    const q2Counts = new Map<string, number>()
    for (const r of got) if (r.id.startsWith('q2:')) q2Counts.set(r.id, (q2Counts.get(r.id) ?? 0) + 1)
    assert.deepEqual([...q2Counts.values()].filter((n) => n !== 1), [], 'QoS 2: exactly once')
    assert.ok(firstOccurrenceInOrder(got, 'q1:'), 'QoS 1 messages in publish order')
    assert.ok(firstOccurrenceInOrder(got, 'q2:'), 'QoS 2 messages in publish order')

    // The subscription itself survived: a new publish reaches the session.
    const late = await connect(url, 'restart-late', true)
    const retained = await new Promise<string>((resolve) => {
      late.client.once('message', (topic, payload, packet) => resolve(`${topic}=${payload} retain=${packet.retain}`))
      void late.client.subscribeAsync('state/#', { qos: 1 })
    })
    assert.equal(retained, 'state/door=open retain=true', 'the retained message survived the restart')
    await late.client.publishAsync('load/q1', 'after-restart', { qos: 1 })
    await late.client.endAsync()
    const again = await drain(url, 'restart-sub', 1, 10_000)
    assert.deepEqual(
      again.got.map((r) => r.id),
      ['after-restart'],
      'the restored subscription still routes, and nothing is delivered twice after the acks',
    )
  })

  test('[fbroker] crash (SIGKILL mid-stream): every message whose PUBACK/PUBREC the publisher got is delivered after the restart', async () => {
    let { broker, url } = await start()
    const sub = await connect(url, 'crash-sub', false)
    await sub.client.subscribeAsync('crash/#', { qos: 2 })
    await sub.client.endAsync()

    const pub = await connect(url, 'crash-pub', true)
    pub.client.on('error', () => undefined)
    const ids = Array.from({ length: 20_000 }, (_, i) => `c${i % 5 === 0 ? 2 : 1}:${i}`)
    const acked = new Set<string>()
    let next = 0
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!
        await pub.client.publishAsync(id.startsWith('c2') ? 'crash/q2' : 'crash/q1', id, { qos: id.startsWith('c2') ? 2 : 1 })
        acked.add(id)
      }
    }
    void Promise.all(Array.from({ length: 20 }, worker)).catch(() => undefined)
    // Connected when the broker dies: its will is published after the restart.
    const victim = mqtt.connect(url, { clientId: 'crash-will', clean: false, reconnectPeriod: 0, will: { topic: 'crash/will', payload: Buffer.from('will-crash'), qos: 1, retain: false } })
    victim.on('error', () => undefined)
    await new Promise((resolve) => victim.once('connect', resolve))
    while (acked.size < 3_000) await new Promise((r) => setTimeout(r, 20))
    const closed = new Promise<void>((r) => pub.client.once('close', () => r()))
    process.kill(broker.pid, 'SIGKILL')
    // MQTT.js leaves the unacknowledged publishes pending when the socket
    // dies; what was acknowledged before the close is what counts.
    await closed
    pub.client.end(true)
    victim.end(true)
    const ackedAtCrash = acked.size
    assert.ok(ackedAtCrash >= 3_000 && ackedAtCrash < ids.length, `killed mid-stream (${ackedAtCrash} acknowledged)`)

    ;({ broker, url } = await start())
    // The will is queued last (published when the broker restores).
    const { got } = await drain(url, 'crash-sub', (d) => d.has('will-crash') && [...acked].every((id) => d.has(id)), 60_000)
    const delivered = new Set(got.map((r) => r.id))
    assert.ok(delivered.has('will-crash'), 'the will of a client connected at the crash is published after the restart')
    const lost = [...acked].filter((id) => !delivered.has(id))
    const duplicates = got.length - delivered.size
    const q2Dups = got.filter((r) => r.id.startsWith('c2')).length - [...delivered].filter((id) => id.startsWith('c2')).length
    console.log(
      `# crash test: sent ${next}, acknowledged ${ackedAtCrash}, delivered after restart ${delivered.size} distinct (${got.length} with ${duplicates} duplicates, ${q2Dups} of them QoS 2), lost ${lost.length}`,
    )
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged messages were lost`)
    assert.equal(q2Dups, 0, 'QoS 2 messages are not delivered twice')
  })

  test('[fbroker] Redis outage mid-stream: acks wait while Redis is down, nothing acknowledged is lost, the broker never exits', async () => {
    let { broker, url } = await start()
    const sub = await connect(url, 'outage-sub', false)
    await sub.client.subscribeAsync('outage/#', { qos: 1 })
    await sub.client.endAsync()

    const pub = await connect(url, 'outage-pub', true)
    const ids = Array.from({ length: 3_000 }, (_, i) => `o:${i}`)
    const acked = new Set<string>()
    let next = 0
    const paced = async () => {
      while (next < ids.length) {
        const id = ids[next++]!
        await pub.client.publishAsync('outage/x', id, { qos: 1 })
        acked.add(id)
        await new Promise((r) => setTimeout(r, 1))
      }
    }
    const publishing = Promise.all(Array.from({ length: 4 }, paced))
    while (acked.size < 500) await new Promise((r) => setTimeout(r, 10))
    const logFrom = broker.entries.length
    redisSh('stop')
    await broker.waitFor(/persistence store unavailable/, 20_000, logFrom)
    const ackedWhileDown = acked.size
    await new Promise((r) => setTimeout(r, 1500))
    assert.ok(acked.size - ackedWhileDown < 50, `acks stop while Redis is down (${acked.size - ackedWhileDown} more)`)
    redisSh('start')
    await broker.waitFor(/persistence store (recovered|available)/i, 30_000, logFrom)
    await publishing
    await pub.client.endAsync()
    assert.equal(acked.size, ids.length, 'every publish was acknowledged once Redis was back')
    assert.equal(broker.child.exitCode, null, 'the broker process is still running')

    // Restart the broker too: what it acknowledged is in Redis.
    assert.equal(await broker.stop(), 0)
    ;({ broker, url } = await start())
    const { got } = await drain(url, 'outage-sub', ids.length, 60_000)
    const delivered = new Set(got.map((r) => r.id))
    const lost = ids.filter((id) => !delivered.has(id))
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged messages were lost`)
  })

  test('[MQTT-4.4.0-1] in-flight state survives a restart: unacknowledged QoS 1/2 deliveries are re-sent with DUP and their packet ids, a PUBREC\'d one gets its PUBREL; an inbound QoS 2 id awaiting PUBREL is not delivered again', async () => {
    let { broker, url } = await start()
    const port = () => Number(new URL(url).port)
    // A subscriber that never acknowledges.
    let sub = await RawClient.connect(port())
    await sub.handshake({ clientId: 'inflight-sub', clean: false })
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fl/#', qos: 2 }] })
    assert.equal((await sub.next())?.cmd, 'suback')
    // A persistent publisher that sends a QoS 2 PUBLISH and never PUBREL.
    let pub = await RawClient.connect(port())
    await pub.handshake({ clientId: 'inflight-pub', clean: false })
    pub.send({ cmd: 'publish', topic: 'fl/q2', payload: Buffer.from('exactly-once'), qos: 2, messageId: 77 })
    assert.deepEqual(await pub.next(5000).then((p) => [p?.cmd, p?.messageId]), ['pubrec', 77])
    const helper = await connect(url, 'inflight-helper', true)
    await helper.client.publishAsync('fl/a', 'one', { qos: 1 })
    await helper.client.publishAsync('fl/b', 'two', { qos: 2 })
    await helper.client.endAsync()
    const first: Record<string, { id: number; qos: number }> = {}
    for (let i = 0; i < 3; i++) {
      const p = await sub.next(5000)
      assert.equal(p?.cmd, 'publish')
      first[String(p!.payload)] = { id: p!.messageId, qos: p!.qos }
    }
    assert.deepEqual(Object.keys(first).sort(), ['exactly-once', 'one', 'two'])
    // PUBREC the QoS 2 "two": it moves to the PUBCOMP stage (the broker answers PUBREL).
    sub.send({ cmd: 'pubrec', messageId: first['two']!.id })
    assert.deepEqual(await sub.next(5000).then((p) => [p?.cmd, p?.messageId]), ['pubrel', first['two']!.id])
    await new Promise((r) => setTimeout(r, 300))
    sub.destroy()
    pub.destroy()

    assert.equal(await broker.stop(), 0)
    ;({ broker, url } = await start())

    sub = await RawClient.connect(port())
    assert.equal((await sub.handshake({ clientId: 'inflight-sub', clean: false })).sessionPresent, true)
    const resent: string[] = []
    for (let i = 0; i < 3; i++) {
      const p = await sub.next(5000)
      if (p?.cmd === 'publish') {
        assert.equal(p.dup, true, `re-sent ${p.payload} has DUP set`)
        assert.equal(p.messageId, first[String(p.payload)]!.id, `re-sent ${p.payload} keeps its packet id`)
        resent.push(`publish:${p.payload}`)
      } else resent.push(`${p?.cmd}:${p?.messageId}`)
    }
    assert.deepEqual(resent.sort(), ['publish:exactly-once', 'publish:one', `pubrel:${first['two']!.id}`].sort())

    // The publisher re-sends its QoS 2 PUBLISH (DUP) after the restart: the
    // broker knows the id, answers PUBREC and does not route it again.
    pub = await RawClient.connect(port())
    assert.equal((await pub.handshake({ clientId: 'inflight-pub', clean: false })).sessionPresent, true)
    pub.send({ cmd: 'publish', topic: 'fl/q2', payload: Buffer.from('exactly-once'), qos: 2, messageId: 77, dup: true })
    assert.deepEqual(await pub.next(5000).then((p) => [p?.cmd, p?.messageId]), ['pubrec', 77])
    pub.send({ cmd: 'pubrel', messageId: 77 })
    assert.deepEqual(await pub.next(5000).then((p) => [p?.cmd, p?.messageId]), ['pubcomp', 77])
    await assert.rejects(sub.next(700), /no packet/, 'the re-sent QoS 2 publish is not delivered a second time')
    sub.destroy()
    pub.destroy()
  })

  test('[fbroker] a clean session leaves no keys behind; a persistent one that ends is removed when it expires', async () => {
    const { url } = await start({ FBROKER_SESSION_EXPIRY_SECS: '1' })
    const clean = await connect(url, 'keys-clean', true)
    await clean.client.subscribeAsync('k/#', { qos: 1 })
    await clean.client.endAsync()
    const persistent = await connect(url, 'keys-persistent', false)
    await persistent.client.subscribeAsync('k/#', { qos: 1 })
    await persistent.client.endAsync()
    const keysOf = async (clientId: string) => (await admin.keys(`${prefix}*`)).filter((k) => k.includes(clientId))
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(await keysOf('keys-clean'), [], 'no key mentions the clean session')
    assert.ok((await keysOf('keys-persistent')).length > 0, 'the persistent session is stored')
    const deadline = Date.now() + 10_000
    while ((await keysOf('keys-persistent')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    assert.deepEqual(await keysOf('keys-persistent'), [], 'the expired session left no keys')
  })
})
