// TypeScript/JavaScript auth plugins through a real broker: modules loaded
// by Broker.start({ plugins }), the native core asking them over the FFI in
// batches, errors and timeouts failing closed, chain order, and the JWT
// example plugin.
import { after, afterEach, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Broker, PluginLoadError, hashPassword, type Plugin } from 'fbroker'
import { LEVEL, captureLogger, connack, repoRoot, subackCodes, tempDir } from '../helpers/auth'
import { closeAll, ping, publish1, track, uid } from '../helpers/clients'
import { collect, expectPacket } from '../helpers/expect'
import { RawClient } from '../helpers/raw'
import { target } from '../helpers/broker'

const skip = target === 'mosquitto' && 'fbroker plugins'
const dir = tempDir('plugins')

// Authenticates by password: pat and sam are known, anyone else gets no answer.
const passwordPlugin = join(dir, 'password-plugin.mjs')
writeFileSync(
  passwordPlugin,
  `const users = { pat: 'pat-pw', sam: 'sam-pw' }
export default {
  name: 'passwords',
  authenticate(client, username, password) {
    if (username === undefined || !(username in users)) return undefined
    return password !== undefined && password.toString('utf8') === users[username]
  },
}
`,
)

// Refuses forbidden/ for subscribe and publish, caps capped/ at QoS 0; async, like a database lookup.
const topicsPlugin = join(dir, 'topics-plugin.cjs')
writeFileSync(
  topicsPlugin,
  `module.exports = {
  name: 'topics',
  async authorizeSubscribe(client, { topic }) {
    if (topic.startsWith('forbidden/')) return false
    if (topic.startsWith('capped/')) return 0
    return undefined
  },
  async authorizePublish(client, packet) {
    return packet.topic.startsWith('forbidden/') ? false : undefined
  },
}
`,
)

/** A raw connection with CONNACK 0 asserted; closed after each test. */
async function login(port: number, username?: string, password?: string): Promise<RawClient> {
  const c = track(await RawClient.connect(port))
  const connect: Record<string, unknown> = { clientId: uid(username ?? 'anon') }
  if (username !== undefined) connect.username = username
  if (password !== undefined) connect.password = Buffer.from(password)
  const ack = await c.handshake(connect)
  assert.equal(ack.returnCode, 0, `CONNACK for ${username ?? 'anonymous'}`)
  return c
}

function published(packets: Array<{ cmd: string; topic?: string; payload?: Buffer; qos?: number }>): string[] {
  return packets.filter((p) => p.cmd === 'publish').map((p) => `${p.topic} ${p.payload?.toString()} q${p.qos}`)
}

async function startError(options: Parameters<typeof Broker.start>[0]): Promise<unknown> {
  return Broker.start(options).then(
    async (b) => {
      await b.close()
      return undefined
    },
    (e: unknown) => e,
  )
}

describe('plugins loaded from files', { skip }, () => {
  let broker: Broker
  before(async () => {
    broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [passwordPlugin, topicsPlugin], logger: false })
  })
  afterEach(closeAll)
  after(() => broker.close())

  test('[fbroker] an .mjs plugin passed to Broker.start({ plugins }) authenticates by password: right → 0, wrong → 4, none → 5', async () => {
    assert.equal((await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('pat-pw') })).returnCode, 0)
    assert.deepEqual(await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('sam-pw') }), {
      returnCode: 4,
      sessionPresent: false,
      closed: true,
    })
    // No plugin answers for an unknown user; with an authenticate plugin allow_anonymous defaults to false.
    assert.equal((await connack(broker.port, { clientId: uid('u'), username: 'ursula', password: Buffer.from('x') })).returnCode, 5)
    assert.equal((await connack(broker.port, { clientId: uid('n') })).returnCode, 5)
    const auth = broker.authSummary
    assert.equal(auth.allowAnonymous, false)
    assert.deepEqual(auth.plugins, [
      { name: 'passwords', hooks: ['authenticate'] },
      { name: 'topics', hooks: ['authorizeSubscribe', 'authorizePublish'] },
    ])
    assert.deepEqual(auth.hooks, { authenticate: true, authorizeSubscribe: true, authorizePublish: true })
  })

  test('[MQTT-3.9.3-1] a plugin refuses a subset of filters (0x80 in place) and caps another at QoS 0; deliveries respect the cap', async () => {
    const pat = await login(broker.port, 'pat', 'pat-pw')
    assert.deepEqual(
      await subackCodes(pat, [
        { topic: 'open/#', qos: 2 },
        { topic: 'forbidden/#', qos: 1 },
        { topic: 'capped/#', qos: 2 },
      ]),
      [2, 0x80, 0],
    )
    const sam = await login(broker.port, 'sam', 'sam-pw')
    sam.send({ cmd: 'publish', topic: 'capped/x', payload: 'c', qos: 1, messageId: 1 })
    await expectPacket(sam, 'puback')
    const got = await expectPacket(pat, 'publish')
    assert.deepEqual([got.topic, got.payload.toString(), got.qos], ['capped/x', 'c', 0])
  })

  test('[MQTT-3.3.5-2] a PUBLISH a plugin denies is acknowledged and dropped while the allowed ones of the same batch are delivered', async () => {
    const pat = await login(broker.port, 'pat', 'pat-pw')
    assert.deepEqual(await subackCodes(pat, [{ topic: '#', qos: 1 }]), [1])
    const sam = await login(broker.port, 'sam', 'sam-pw')
    const before = broker.stats().publishDenied
    // One TCP write: the native core asks about them in one batch.
    const topics = ['open/1', 'forbidden/2', 'open/3', 'forbidden/4', 'open/5']
    const mqttPacket = require('mqtt-packet') as { generate(p: object): Buffer }
    sam.sendBytes(Buffer.concat(topics.map((topic, i) => mqttPacket.generate({ cmd: 'publish', topic, payload: `m${i}`, qos: 1, messageId: i + 1 }))))
    const acks = await collect(sam, 500)
    assert.deepEqual(
      acks.map((p) => `${p.cmd} ${p.messageId}`),
      ['puback 1', 'puback 2', 'puback 3', 'puback 4', 'puback 5'],
    )
    const delivered = await collect(pat, 300)
    assert.deepEqual(published(delivered), ['open/1 m0 q1', 'open/3 m2 q1', 'open/5 m4 q1'])
    assert.equal(broker.stats().publishDenied - before, 2)
  })
})

describe('hook failures fail closed', { skip }, () => {
  const log = captureLogger()
  const pending: Array<() => void> = []
  let broker: Broker
  const hang = <T>(): Promise<T> => new Promise<T>((resolve) => pending.push(() => resolve(undefined as T)))
  const failing: Plugin = {
    name: 'failing',
    authenticate(_client, username) {
      if (username === 'boom') throw new Error('credential store exploded')
      if (username === 'hang') return hang()
      return username === 'ok' ? true : undefined
    },
    authorizeSubscribe(_client, { topic }) {
      if (topic === 'boom/#') return Promise.reject(new Error('subscribe check exploded'))
      if (topic === 'hang/#') return hang()
      return undefined
    },
    authorizePublish(_client, { topic }) {
      if (topic === 'boom/x') throw new Error('publish check exploded')
      if (topic === 'hang/x') return hang()
      return undefined
    },
  }
  before(async () => {
    broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [failing], authHookTimeoutMs: 300, logger: log.logger })
  })
  afterEach(closeAll)
  after(async () => {
    for (const resolve of pending.splice(0)) resolve()
    await broker.close()
  })

  test('[fbroker] a hook that throws denies (CONNACK 5, SUBACK 0x80, publish dropped) and is logged with the plugin and hook', async () => {
    assert.deepEqual(await connack(broker.port, { clientId: uid('b'), username: 'boom', password: Buffer.from('x') }), {
      returnCode: 5,
      sessionPresent: false,
      closed: true,
    })
    const ok = await login(broker.port, 'ok', 'pw')
    assert.deepEqual(await subackCodes(ok, [{ topic: 'boom/#', qos: 0 }, { topic: 'fine/#', qos: 0 }, { topic: 'boom/x', qos: 0 }]), [0x80, 0, 0])
    const before = broker.stats().publishDenied
    await publish1(ok, 'boom/x', 'dropped', 1)
    await publish1(ok, 'fine/x', 'kept', 2)
    const delivered = published(await collect(ok, 300))
    assert.deepEqual(delivered, ['fine/x kept q0'])
    assert.equal(broker.stats().publishDenied - before, 1)
    const errors = log.lines.filter((l) => l.level === LEVEL.error).map((l) => l.msg)
    assert.ok(errors.some((m) => /^plugin "failing": authenticate failed: credential store exploded; denied$/.test(m)), errors.join('\n'))
    assert.ok(errors.some((m) => /^plugin "failing": authorizeSubscribe failed: subscribe check exploded; denied$/.test(m)), errors.join('\n'))
    assert.ok(errors.some((m) => /^plugin "failing": authorizePublish failed: publish check exploded; denied$/.test(m)), errors.join('\n'))
  })

  test('[fbroker] a hook that never resolves is refused after authHookTimeoutMs (300 ms): CONNACK 5, SUBACK 0x80, publish dropped; others are served meanwhile', async () => {
    // A login that hangs, and a client that is served while it does.
    const started = Date.now()
    let settled = false
    const hanging = connack(broker.port, { clientId: uid('h'), username: 'hang', password: Buffer.from('x') }).finally(() => (settled = true))
    const ok = await login(broker.port, 'ok', 'pw')
    assert.deepEqual(await subackCodes(ok, [{ topic: 'served/#', qos: 1 }]), [1])
    await publish1(ok, 'served/x', 'meanwhile', 1)
    const meanwhile = await expectPacket(ok, 'publish')
    ok.send({ cmd: 'puback', messageId: meanwhile.messageId })
    assert.equal(settled, false, `the other client was served only after the hanging login was refused (${Date.now() - started} ms)`)
    const refused = await hanging
    const refusedAfter = Date.now() - started
    assert.deepEqual(refused, { returnCode: 5, sessionPresent: false, closed: true })
    assert.ok(refusedAfter >= 280 && refusedAfter < 2000, `refused after ${refusedAfter} ms`)

    // A SUBSCRIBE whose check hangs: 0x80 after the timeout, for that packet's filters.
    const t0 = Date.now()
    assert.deepEqual(await subackCodes(ok, [{ topic: 'hang/#', qos: 0 }], 2), [0x80])
    assert.ok(Date.now() - t0 >= 280, 'the SUBACK waited for the timeout')

    // A PUBLISH whose check hangs: acknowledged after the timeout, and dropped.
    const watcher = await login(broker.port, 'ok', 'pw')
    assert.deepEqual(await subackCodes(watcher, [{ topic: '#', qos: 0 }]), [0])
    const before = broker.stats().publishDenied
    await publish1(ok, 'hang/x', 'never', 4)
    assert.equal(broker.stats().publishDenied - before, 1)
    await ping(ok)
    assert.deepEqual(published(await collect(watcher, 300)), [])
    // Still serving.
    await publish1(ok, 'served/y', 'after', 5)
    assert.deepEqual(published(await collect(watcher, 300)), ['served/y after q0'])
  })
})

describe('chain order', { skip }, () => {
  afterEach(closeAll)

  test('[fbroker] the first definite answer wins: a path plugin, then an inline object; undefined passes on', async () => {
    const calls: string[] = []
    const second: Plugin = {
      name: 'deny-all',
      authenticate(_c, username) {
        calls.push(`deny-all:${username}`)
        return false
      },
    }
    // passwords (file) answers for pat and sam only; deny-all answers for everyone else.
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [passwordPlugin, second], logger: false })
    try {
      assert.equal((await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('pat-pw') })).returnCode, 0)
      assert.equal((await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('bad') })).returnCode, 4)
      assert.deepEqual(calls, [], 'the second plugin is not asked once the first answered')
      assert.equal((await connack(broker.port, { clientId: uid('x'), username: 'xavier', password: Buffer.from('x') })).returnCode, 4)
      assert.deepEqual(calls, ['deny-all:xavier'])
    } finally {
      await broker.close()
    }
  })

  test('[fbroker] the password file is checked before the plugins: a user it knows cannot be let in by a plugin', async () => {
    const passwordFile = join(dir, 'passwd')
    writeFileSync(passwordFile, `pat:${await hashPassword('file-pw', { iterations: 1000 })}\n`)
    const asked: string[] = []
    const allowAll: Plugin = {
      name: 'allow-all',
      authenticate(_c, username) {
        asked.push(String(username))
        return true
      },
    }
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, plugins: [allowAll], logger: false })
    try {
      assert.equal((await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('file-pw') })).returnCode, 0)
      assert.equal((await connack(broker.port, { clientId: uid('p'), username: 'pat', password: Buffer.from('pat-pw') })).returnCode, 4)
      assert.deepEqual(asked, [], 'the plugin is not asked about a user of the password file')
      // A user the file does not know is left to the plugin.
      assert.equal((await connack(broker.port, { clientId: uid('o'), username: 'other', password: Buffer.from('x') })).returnCode, 0)
      assert.deepEqual(asked, ['other'])
    } finally {
      await broker.close()
    }
  })

  test('[fbroker] a plugin module that cannot be loaded stops Broker.start with a PluginLoadError naming it; close() reaches the plugins', async () => {
    const err = await startError({ host: '127.0.0.1', port: 0, plugins: ['./no-such-plugin.mjs'], logger: false })
    assert.ok(err instanceof PluginLoadError, String(err))
    assert.match(err.message, /^plugin \.\/no-such-plugin\.mjs \(.*no-such-plugin\.mjs\): file not found$/)

    let closed = 0
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [{ name: 'closing', close: () => void closed++ }], logger: false })
    assert.deepEqual(broker.authSummary.hooks, { authenticate: false, authorizeSubscribe: false, authorizePublish: false })
    assert.equal(broker.authSummary.allowAnonymous, true, 'no authenticate hook: anonymous clients stay allowed by default')
    await broker.close()
    await broker.close()
    assert.equal(closed, 1)
  })
})

describe('publishes of one read are decided together', { skip }, () => {
  afterEach(closeAll)

  test('[fbroker] 10 pipelined publishes with a 150 ms async authorizePublish hook are acknowledged in about one hook delay, not ten', async () => {
    const slow: Plugin = {
      name: 'slow',
      authorizePublish: () => new Promise((resolve) => setTimeout(() => resolve(true), 150)),
    }
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [slow], logger: false })
    try {
      const c = await login(broker.port)
      const mqttPacket = require('mqtt-packet') as { generate(p: object): Buffer }
      const started = Date.now()
      c.sendBytes(Buffer.concat(Array.from({ length: 10 }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: `b/${i}`, payload: 'x', qos: 1, messageId: i + 1 }))))
      const acked: number[] = []
      for (let i = 0; i < 10; i++) acked.push((await expectPacket(c, 'puback', 2000)).messageId)
      const elapsed = Date.now() - started
      assert.deepEqual(acked, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      assert.ok(elapsed >= 140, `acknowledged after ${elapsed} ms: the hook was not waited for`)
      assert.ok(elapsed < 750, `acknowledged after ${elapsed} ms: the publishes were decided one after another`)
      assert.equal(broker.stats().publishDenied, 0)
    } finally {
      await broker.close()
    }
  })
})

describe('the JWT example plugin (examples/jwt-auth-plugin.mjs)', { skip }, () => {
  const secret = 'test-secret-' + Math.random().toString(36).slice(2)
  let broker: Broker
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const sign = (claims: object, key = secret, header: object = { alg: 'HS256', typ: 'JWT' }) => {
    const head = `${b64(header)}.${b64(claims)}`
    return `${head}.${createHmac('sha256', key).update(head).digest('base64url')}`
  }
  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600

  before(async () => {
    process.env.FBROKER_JWT_SECRET = secret
    broker = await Broker.start({ host: '127.0.0.1', port: 0, plugins: [join(repoRoot, 'examples', 'jwt-auth-plugin.mjs')], logger: false })
  })
  afterEach(closeAll)
  after(async () => {
    delete process.env.FBROKER_JWT_SECRET
    await broker.close()
  })

  test('[fbroker] a valid HS256 token for the user name logs in; a forged, expired or foreign token gets 4; a non-JWT password gets 5', async () => {
    const ok = { clientId: uid('j'), username: 'alice', password: Buffer.from(sign({ sub: 'alice', exp: inAnHour() })) }
    assert.equal((await connack(broker.port, ok)).returnCode, 0)
    for (const [why, password] of [
      ['another secret', sign({ sub: 'alice', exp: inAnHour() }, 'not-the-secret')],
      ['expired', sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 10 })],
      ['sub is another user', sign({ sub: 'bob', exp: inAnHour() })],
      ['alg none', `${b64({ alg: 'none' })}.${b64({ sub: 'alice', exp: inAnHour() })}.x`],
    ] as const) {
      const r = await connack(broker.port, { clientId: uid('j'), username: 'alice', password: Buffer.from(password) })
      assert.equal(r.returnCode, 4, why)
    }
    // Not shaped like a JWT: no answer, and nothing else vouches for the user.
    assert.equal((await connack(broker.port, { clientId: uid('j'), username: 'alice', password: Buffer.from('plain') })).returnCode, 5)
  })

  test('[fbroker] with a token, publish and subscribe are allowed only under users/<user name>/#', async () => {
    const alice = await login(broker.port, 'alice', sign({ sub: 'alice', exp: inAnHour() }))
    assert.deepEqual(await subackCodes(alice, [{ topic: 'users/alice/#', qos: 1 }, { topic: 'users/bob/#', qos: 1 }, { topic: '#', qos: 0 }]), [1, 0x80, 0x80])
    const before = broker.stats().publishDenied
    await publish1(alice, 'users/bob/inbox', 'no', 1)
    await publish1(alice, 'users/alice/notes', 'yes', 2)
    assert.deepEqual(published(await collect(alice, 300)), ['users/alice/notes yes q1'])
    assert.equal(broker.stats().publishDenied - before, 1)
  })
})
