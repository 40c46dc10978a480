// The Redis credential source against a real redis-server (scripts/redis.sh,
// on a free loopback port): the shared contract, the cache, bad records and
// an outage.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import {
  DEFAULT_REDIS_AUTH_PREFIX,
  PluginChain,
  createRedisAuthPlugin,
  hashPassword,
  type AuthLogger,
  type ClientInfo,
  type RedisAuthPlugin,
} from 'fbroker'
import { authSourceSuite } from '../backends/auth-source.abstract'

const root = path.resolve(__dirname, '..', '..')
const script = path.join(root, 'scripts', 'redis.sh')
const haveRedis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).error === undefined
const skip = haveRedis
  ? false
  : 'redis-server is not installed: apt-get install redis-server (scripts/redis.sh start installs it when run as root)'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-redis-'))
let port = 0
let started = false

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port: p } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return p
}

function redisSh(action: 'start' | 'stop'): void {
  const r = spawnSync('bash', [script, action, String(port), dir], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, `scripts/redis.sh ${action} failed: ${r.stderr}`)
}

before(async () => {
  if (!haveRedis) return
  port = await freePort()
  redisSh('start')
  started = true
})
after(() => {
  if (started) redisSh('stop')
  rmSync(dir, { recursive: true, force: true })
})

let suites = 0
const admins: Redis[] = []
after(() => {
  for (const a of admins) a.disconnect()
})

function admin(): Redis {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: false })
  client.on('error', () => {}) // reconnects quietly through the outage test
  admins.push(client)
  return client
}

function captureLogger(): AuthLogger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = []
  const at = (level: string) => (_o: object, msg?: string) => void lines.push({ level, msg: msg ?? '' })
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

const client = (username: string): ClientInfo => ({ id: `c-${username}`, username, address: '127.0.0.1:1', protocolVersion: 4 })

authSourceSuite(
  'redis',
  async (users) => {
    const prefix = `test${++suites}:${DEFAULT_REDIS_AUTH_PREFIX}`
    const redis = admin()
    for (const user of users) {
      const fields: Record<string, string> = {}
      if (user.hash !== undefined) fields.password = user.hash
      if (user.acl !== undefined) fields.acl = JSON.stringify(user.acl)
      await redis.hset(prefix + user.name, fields)
    }
    const plugin = createRedisAuthPlugin({ host: '127.0.0.1', port, prefix })
    return { plugin, close: () => plugin.close() }
  },
  { skip },
)

describe('redis source', { skip }, () => {
  test('the default key layout: fbroker:auth:user:<name>, fields password and acl; connects by URL', async () => {
    const redis = admin()
    await redis.hset('fbroker:auth:user:urluser', {
      password: await hashPassword('pw', { iterations: 1000 }),
      acl: JSON.stringify([{ access: 'readwrite', topic: 'urluser/#' }]),
    })
    const plugin = createRedisAuthPlugin({ url: `redis://127.0.0.1:${port}/0` })
    try {
      assert.equal(await plugin.authenticate(client('urluser'), 'urluser', Buffer.from('pw')), true)
      assert.equal(await plugin.authorizePublish(client('urluser'), { topic: 'urluser/a', payload: Buffer.alloc(0), qos: 0, retain: false }), true)
      assert.equal(await plugin.authorizePublish(client('urluser'), { topic: 'other', payload: Buffer.alloc(0), qos: 0, retain: false }), false)
    } finally {
      await plugin.close()
    }
  })

  test('records are cached for cacheTtlMs; invalidate() forgets them', async () => {
    const redis = admin()
    const prefix = 'cache-test:'
    await redis.hset(`${prefix}ann`, { password: await hashPassword('old', { iterations: 1000 }) })
    const plugin = createRedisAuthPlugin({ port, prefix, cacheTtlMs: 150 })
    try {
      assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('old')), true)
      assert.equal(await plugin.authenticate(client('nobody'), 'nobody', Buffer.from('x')), false)

      await redis.hset(`${prefix}ann`, { password: await hashPassword('new', { iterations: 1000 }) })
      await redis.hset(`${prefix}nobody`, { password: await hashPassword('x', { iterations: 1000 }) })
      assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('old')), true, 'cached record')
      assert.equal(await plugin.authenticate(client('nobody'), 'nobody', Buffer.from('x')), false, 'cached absence')

      await sleep(200)
      assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('old')), false, 'expired')
      assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('new')), true)
      assert.equal(await plugin.authenticate(client('nobody'), 'nobody', Buffer.from('x')), true)

      await redis.hset(`${prefix}ann`, { password: await hashPassword('newer', { iterations: 1000 }) })
      plugin.invalidate('ann')
      assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('newer')), true)
    } finally {
      await plugin.close()
    }
  })

  test('concurrent lookups of one user share one Redis round trip', async () => {
    const redis = admin()
    await redis.hset('dedupe:ann', { acl: JSON.stringify([{ access: 'write', topic: 't' }]) })
    const plugin = createRedisAuthPlugin({ port, prefix: 'dedupe:' })
    try {
      await plugin.redis.ping() // connected
      const before = Number((await redis.info('stats')).match(/total_commands_processed:(\d+)/)![1])
      const chain = new PluginChain([plugin])
      const items = Array.from({ length: 50 }, () => ({ client: client('ann'), topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false }))
      assert.deepEqual(await chain.authorizePublishBatch(items), items.map(() => true))
      const afterCount = Number((await redis.info('stats')).match(/total_commands_processed:(\d+)/)![1])
      assert.ok(afterCount - before <= 2, `${afterCount - before} commands for 50 messages`) // one HMGET (+ our INFO)
    } finally {
      await plugin.close()
    }
  })

  test('an invalid acl or password field is logged and fails closed; a key of the wrong type denies', async () => {
    const redis = admin()
    await redis.hset('bad:acl', { password: await hashPassword('pw', { iterations: 1000 }), acl: '{not json' })
    await redis.hset('bad:hash', { password: 'plaintext' })
    await redis.set('bad:string', 'not a hash')
    const logger = captureLogger()
    const plugin = createRedisAuthPlugin({ port, prefix: 'bad:', logger })
    const chain = new PluginChain([plugin], { logger })
    try {
      assert.equal(await plugin.authenticate(client('acl'), 'acl', Buffer.from('pw')), true)
      assert.deepEqual(await chain.authorizeSubscribe(client('acl'), [{ topic: 'a', qos: 0 }]), [0x80])
      assert.equal(await plugin.authenticate(client('hash'), 'hash', Buffer.from('plaintext')), false)
      const decision = await chain.authenticate(client('string'), 'string', Buffer.from('x'))
      assert.deepEqual([decision.outcome, decision.returnCode, decision.cause], ['deny', 5, 'error'])
      const text = logger.lines.map((l) => l.msg).join('\n')
      assert.match(text, /user "acl": acl is not valid JSON/)
      assert.match(text, /user "hash" has a password in no supported format/)
      assert.match(text, /Redis lookup of user "string" failed: WRONGTYPE/)
    } finally {
      await plugin.close()
    }
  })

  test('when Redis goes away: denied (fail closed) and logged once; after it is back: served again', async () => {
    const redis = admin()
    await redis.hset('outage:ann', {
      password: await hashPassword('pw', { iterations: 1000 }),
      acl: JSON.stringify([{ access: 'readwrite', topic: 'ann/#' }]),
    })
    const logger = captureLogger()
    const plugin: RedisAuthPlugin = createRedisAuthPlugin({ port, prefix: 'outage:', cacheTtlMs: 0, commandTimeoutMs: 300, logger })
    const chain = new PluginChain([plugin], { logger, hookTimeoutMs: 2000 })
    const pubItem = { client: client('ann'), topic: 'ann/x', payload: Buffer.alloc(0), qos: 0, retain: false }
    try {
      assert.equal((await chain.authenticate(client('ann'), 'ann', Buffer.from('pw'))).outcome, 'allow')

      redisSh('stop')
      const startedAt = performance.now()
      const decision = await chain.authenticate(client('ann'), 'ann', Buffer.from('pw'))
      assert.deepEqual([decision.outcome, decision.returnCode, decision.cause], ['deny', 5, 'error'])
      assert.ok(performance.now() - startedAt < 1900, 'failed before the hook timeout')
      assert.deepEqual(await chain.authorizePublishBatch([pubItem, pubItem]), [false, false])
      assert.deepEqual(await chain.authorizeSubscribe(client('ann'), [{ topic: 'ann/#', qos: 1 }]), [0x80])
      await sleep(500) // several reconnect attempts
      const unavailable = logger.lines.filter((l) => /Redis unavailable/.test(l.msg))
      assert.equal(unavailable.length, 1, 'the outage is logged once, not per reconnect attempt')
      assert.ok(logger.lines.some((l) => l.level === 'error' && /authorizePublish failed: .*Redis lookup of user "ann" failed/.test(l.msg)))

      redisSh('start')
      await redis.hset('outage:ann', {
        password: await hashPassword('pw', { iterations: 1000 }),
        acl: JSON.stringify([{ access: 'readwrite', topic: 'ann/#' }]),
      }) // the restarted server has no data (no persistence)
      const deadline = performance.now() + 5000
      while (plugin.redis.status !== 'ready' && performance.now() < deadline) await sleep(50)
      assert.equal(plugin.redis.status, 'ready', 'ioredis reconnected')
      assert.equal((await chain.authenticate(client('ann'), 'ann', Buffer.from('pw'))).outcome, 'allow')
      assert.deepEqual(await chain.authorizePublishBatch([pubItem]), [true])
      assert.ok(logger.lines.some((l) => l.level === 'info' && /Redis available again/.test(l.msg)))
    } finally {
      await plugin.close()
    }
  })

  test('close() ends the owned connection and later lookups fail (deny); a passed-in client is left open', async () => {
    const plugin = createRedisAuthPlugin({ port })
    await plugin.redis.ping()
    await plugin.close()
    await plugin.close()
    assert.equal(plugin.redis.status, 'end')
    await assert.rejects(Promise.resolve(plugin.authenticate(client('a'), 'a', Buffer.from('x'))), /closed/)

    const shared = admin()
    const borrowed = createRedisAuthPlugin({ redis: shared, prefix: 'none:' })
    assert.equal(await borrowed.authenticate(client('a'), 'a', Buffer.from('x')), false)
    await borrowed.close()
    assert.equal(await shared.ping(), 'PONG')
  })
})
