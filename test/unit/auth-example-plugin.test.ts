// examples/jwt-auth-plugin.mjs, loaded the way the broker loads plugins.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { PluginChain, createPasswordFilePlugin, hashPassword, loadPlugins, type ClientInfo, type Plugin } from 'fbroker'

const root = path.resolve(__dirname, '..', '..')
const example = path.join(root, 'examples', 'jwt-auth-plugin.mjs')
const SECRET = 'test-secret-do-not-use'

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

function sign(claims: Record<string, unknown>, secret = SECRET, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }): string {
  const body = `${b64url(header)}.${b64url(claims)}`
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`
}

const now = () => Math.floor(Date.now() / 1000)
const client = (username: string | undefined): ClientInfo => ({ id: `c-${username ?? 'anon'}`, username, address: '127.0.0.1:1', protocolVersion: 4 })
const tokenFor = (sub: string, extra: Record<string, unknown> = {}) => Buffer.from(sign({ sub, exp: now() + 60, ...extra }))

describe('examples/jwt-auth-plugin.mjs', () => {
  let plugin: Plugin
  const saved = process.env.FBROKER_JWT_SECRET

  before(async () => {
    process.env.FBROKER_JWT_SECRET = SECRET
    ;[plugin] = (await loadPlugins([path.relative(root, example)], root)) as [Plugin]
  })
  after(() => {
    if (saved === undefined) delete process.env.FBROKER_JWT_SECRET
    else process.env.FBROKER_JWT_SECRET = saved
  })

  test('is a valid plugin named jwt-auth with all three hooks', () => {
    assert.equal(plugin.name, 'jwt-auth')
    assert.deepEqual(new PluginChain([plugin]).hooks, { authenticate: true, authorizeSubscribe: true, authorizePublish: true })
  })

  test('accepts a valid, unexpired HS256 token whose sub is the user name', async () => {
    assert.equal(await plugin.authenticate!(client('alice'), 'alice', tokenFor('alice')), true)
    assert.equal(await plugin.authenticate!(client('alice'), 'alice', tokenFor('alice', { nbf: now() - 5 })), true)
  })

  test('refuses expired, not-yet-valid, tampered, wrongly signed, alg "none", other-user and exp-less tokens', async () => {
    const valid = sign({ sub: 'alice', exp: now() + 60 })
    const [h, p] = valid.split('.') as [string, string, string]
    const tampered = `${h}.${b64url({ sub: 'alice', exp: now() + 3600, admin: true })}.${valid.split('.')[2]}`
    const cases: [string, Buffer][] = [
      ['expired', Buffer.from(sign({ sub: 'alice', exp: now() - 1 }))],
      ['not yet valid', tokenFor('alice', { nbf: now() + 60 })],
      ['tampered payload', Buffer.from(tampered)],
      ['other secret', Buffer.from(sign({ sub: 'alice', exp: now() + 60 }, 'another-secret'))],
      ['alg none', Buffer.from(`${b64url({ alg: 'none', typ: 'JWT' })}.${p}.AAAA`)],
      ['alg HS512', Buffer.from(sign({ sub: 'alice', exp: now() + 60 }, SECRET, { alg: 'HS512' }))],
      ['sub is someone else', tokenFor('bob')],
      ['no exp', Buffer.from(sign({ sub: 'alice' }))],
      ['exp not a number', Buffer.from(sign({ sub: 'alice', exp: String(now() + 60) }))],
      ['payload not JSON', Buffer.from(`${h}.${Buffer.from('nope').toString('base64url')}.${valid.split('.')[2]}`)],
    ]
    for (const [label, token] of cases) assert.equal(await plugin.authenticate!(client('alice'), 'alice', token), false, label)
    // A sub with topic wildcards or separators would widen users/<sub>/#: refused.
    assert.equal(await plugin.authenticate!(client('a/+'), 'a/+', tokenFor('a/+')), false)
    assert.equal(await plugin.authenticate!(client('#'), '#', tokenFor('#')), false)
  })

  test('gives no answer for passwords that are not JWTs, so a password file after it can decide', async () => {
    assert.equal(await plugin.authenticate!(client('carol'), 'carol', Buffer.from('plain password')), undefined)
    assert.equal(await plugin.authenticate!(client('carol'), 'carol', undefined), undefined)

    const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-jwt-'))
    try {
      const file = path.join(dir, 'passwd')
      writeFileSync(file, `carol:${await hashPassword('plain password', { iterations: 1000 })}\n`)
      const chain = new PluginChain([plugin, createPasswordFilePlugin({ file })])
      assert.deepEqual(await chain.authenticate(client('alice'), 'alice', tokenFor('alice')), { outcome: 'allow', returnCode: 0, cause: 'answer', plugin: 'jwt-auth' })
      assert.deepEqual(await chain.authenticate(client('carol'), 'carol', Buffer.from('plain password')), {
        outcome: 'allow',
        returnCode: 0,
        cause: 'answer',
        plugin: 'password-file',
      })
      const bad = await chain.authenticate(client('alice'), 'alice', Buffer.from(sign({ sub: 'alice', exp: now() - 1 })))
      assert.deepEqual([bad.outcome, bad.returnCode, bad.plugin], ['deny', 4, 'jwt-auth'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('authorizes publish and subscribe only under users/<user name>/#', async () => {
    const chain = new PluginChain([plugin])
    const alice = client('alice')
    assert.deepEqual(
      await chain.authorizeSubscribe(alice, [
        { topic: 'users/alice/#', qos: 1 },
        { topic: 'users/alice/+/temp', qos: 2 },
        { topic: 'users/alice', qos: 0 },
        { topic: 'users/+/temp', qos: 1 },
        { topic: 'users/alice2/x', qos: 1 },
        { topic: '#', qos: 0 },
      ]),
      [1, 2, 0, 0x80, 0x80, 0x80],
    )
    const pub = (c: ClientInfo, topic: string) => ({ client: c, topic, payload: Buffer.from('1'), qos: 0, retain: false })
    assert.deepEqual(
      await chain.authorizePublishBatch([pub(alice, 'users/alice/temp'), pub(alice, 'users/bob/temp'), pub(alice, 'users'), pub(client(undefined), 'users/x')]),
      [true, false, false, false],
    )
  })

  test('refuses to load without FBROKER_JWT_SECRET or with a bad leeway, naming the file', () => {
    const env = { ...process.env }
    delete env.FBROKER_JWT_SECRET
    const script = `require('fbroker').loadPlugins([process.argv[1]]).then(() => process.exit(0), (err) => { console.error(err.message); process.exit(1) })`
    const r = spawnSync(process.execPath, ['-e', script, example], { cwd: root, env, encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 1)
    assert.equal(r.stderr.trim(), `plugin ${example}: failed to load: FBROKER_JWT_SECRET is not set: the JWT plugin needs the HS256 signing secret`)

    const badLeeway = spawnSync(process.execPath, ['-e', script, example], {
      cwd: root,
      env: { ...env, FBROKER_JWT_SECRET: 's', FBROKER_JWT_LEEWAY_SECS: 'soon' },
      encoding: 'utf8',
      timeout: 20_000,
    })
    assert.equal(badLeeway.status, 1)
    assert.match(badLeeway.stderr, /FBROKER_JWT_LEEWAY_SECS must be a number of seconds between 0 and 3600, got "soon"/)
  })
})
