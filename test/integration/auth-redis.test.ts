// The Redis credential source through a real broker: a redis-server on a
// free port (scripts/redis.sh), users stored as hashes with a `$7$`
// password and an optional JSON ACL, real clients over real sockets.
import { after, afterEach, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { Broker, hashPassword } from 'fbroker'
import { connack, onPath, subackCodes, tempDir } from '../helpers/auth'
import { freePort, target } from '../helpers/broker'
import { closeAll, publish1, track, uid } from '../helpers/clients'
import { collect } from '../helpers/expect'
import { RawClient } from '../helpers/raw'
import { redisScript } from '../helpers/redis'

const missing = !onPath('redis-server')
  ? 'redis-server is not installed: apt-get install redis-server (CI installs it; scripts/redis.sh start does when run as root)'
  : false
const skip = target === 'mosquitto' ? 'fbroker auth options' : missing
const PREFIX = 'test:auth:user:'

describe('Redis credential source', { skip }, () => {
  const dir = tempDir('redis-auth')
  let port = 0
  let started = false
  let admin: Redis
  let broker: Broker

  const redisSh = (action: 'start' | 'stop') => redisScript(action, port, dir)

  before(async () => {
    port = await freePort()
    redisSh('start')
    started = true
    admin = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
    await admin.connect()
    await admin.hset(`${PREFIX}dana`, { password: await hashPassword('dana-pw') }) // $7$, 210000 iterations
    await admin.hset(`${PREFIX}carol`, {
      password: await hashPassword('carol-pw', { iterations: 1000 }),
      acl: JSON.stringify([
        { access: 'readwrite', topic: 'carol/#' },
        { access: 'read', topic: 'public/#' },
      ]),
    })
    broker = await Broker.start({
      host: '127.0.0.1',
      port: 0,
      redisAuthUrl: `redis://127.0.0.1:${port}/0`,
      redisAuthPrefix: PREFIX,
      redisAuthCacheTtlMs: 0,
      logger: false,
    })
  })
  afterEach(closeAll)
  after(async () => {
    await broker?.close() // closes the broker's Redis connection too
    admin?.disconnect()
    if (started) redisSh('stop')
  })

  async function login(username: string, password: string): Promise<RawClient> {
    const c = track(await RawClient.connect(broker.port))
    const ack = await c.handshake({ clientId: uid(username), username, password: Buffer.from(password) })
    assert.equal(ack.returnCode, 0, `CONNACK for ${username}`)
    return c
  }

  test('[fbroker] a user stored in Redis with a $7$ hash from hashPassword connects with the right password (0); a wrong password or an unknown user gets 4', async () => {
    const stored = await admin.hget(`${PREFIX}dana`, 'password')
    assert.match(stored ?? '', /^\$7\$210000\$/)
    assert.equal((await connack(broker.port, { clientId: uid('d'), username: 'dana', password: Buffer.from('dana-pw') })).returnCode, 0)
    assert.deepEqual(await connack(broker.port, { clientId: uid('d'), username: 'dana', password: Buffer.from('wrong') }), {
      returnCode: 4,
      sessionPresent: false,
      closed: true,
    })
    assert.equal((await connack(broker.port, { clientId: uid('u'), username: 'nobody', password: Buffer.from('x') })).returnCode, 4)
  })

  test('[fbroker] with redis_auth_url, allow_anonymous defaults to false: no credentials gets CONNACK 5', async () => {
    assert.equal(broker.authSummary.allowAnonymous, false)
    assert.equal(broker.authSummary.redisAuthUrl, `redis://127.0.0.1:${port}/0`)
    assert.equal((await connack(broker.port, { clientId: uid('n') })).returnCode, 5)
  })

  test('[fbroker] a user\'s acl JSON decides subscribe and publish; a user without one is not restricted', async () => {
    const carol = await login('carol', 'carol-pw')
    assert.deepEqual(await subackCodes(carol, [{ topic: 'carol/#', qos: 1 }, { topic: 'public/#', qos: 1 }, { topic: 'dana/#', qos: 1 }]), [1, 1, 0x80])
    const dana = await login('dana', 'dana-pw')
    assert.deepEqual(await subackCodes(dana, [{ topic: '#', qos: 1 }]), [1])
    const before = broker.stats().publishDenied
    await publish1(carol, 'public/news', 'read-only for carol', 1)
    await publish1(carol, 'carol/status', 'up', 2)
    const got = (await collect(dana, 300)).filter((p) => p.cmd === 'publish').map((p) => `${p.topic} ${p.payload}`)
    assert.deepEqual(got, ['carol/status up'])
    assert.equal(broker.stats().publishDenied - before, 1)
  })

  test('[fbroker] a user added to Redis while the broker runs can log in at once (cache ttl 0)', async () => {
    assert.equal((await connack(broker.port, { clientId: uid('e'), username: 'erin', password: Buffer.from('erin-pw') })).returnCode, 4)
    await admin.hset(`${PREFIX}erin`, { password: await hashPassword('erin-pw', { iterations: 1000 }) })
    assert.equal((await connack(broker.port, { clientId: uid('e'), username: 'erin', password: Buffer.from('erin-pw') })).returnCode, 0)
  })
})
