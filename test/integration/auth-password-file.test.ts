// The password file, end to end: users made by `fbroker passwd -b` ($7$,
// PBKDF2-SHA512) and a legacy unsalted SHA-256 user, checked by the native
// core for real clients (raw CONNECT, MQTT.js, mosquitto_pub).
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { Broker, ConfigError } from 'fbroker'
import { LEVEL, captureLogger, connack, onPath, passwdAdd, sha256Hex, tempDir } from '../helpers/auth'
import { mqttClient, uid } from '../helpers/clients'
import { target } from '../helpers/broker'

const skip = target === 'mosquitto' && 'fbroker auth options'
const dir = tempDir('passwd')
const passwordFile = join(dir, 'passwd')

before(() => {
  passwdAdd(passwordFile, 'alice', 'alice-pw', { create: true })
  appendFileSync(passwordFile, `bob:${sha256Hex('bob-pw')}\n`)
})

function capture() {
  return captureLogger()
}

describe('password file', { skip }, () => {
  let broker: Broker
  let log: ReturnType<typeof capture>
  before(async () => {
    log = capture()
    broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, logger: log.logger })
  })
  after(() => broker.close())

  test('[fbroker] fbroker passwd -b writes a $7$ entry with 210000 iterations, and the broker counts both users', () => {
    const lines = readFileSync(passwordFile, 'utf8').trim().split('\n')
    assert.match(lines[0]!, /^alice:\$7\$210000\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/)
    assert.match(lines[1]!, /^bob:[0-9a-f]{64}$/)
    const auth = broker.authSummary
    assert.deepEqual(auth.passwordFile, { path: passwordFile, users: 2 })
    assert.equal(auth.allowAnonymous, false, 'allow_anonymous defaults to false with a password file')
    assert.equal(auth.allowAnonymousExplicit, false)
  })

  test('[MQTT-3.1.4-4] a $7$ user created by fbroker passwd -b connects with the right password (CONNACK 0)', async () => {
    const r = await connack(broker.port, { clientId: uid('a'), username: 'alice', password: Buffer.from('alice-pw') })
    assert.equal(r.returnCode, 0)
    // A second login is served from the verified-credentials cache: same answer.
    assert.equal((await connack(broker.port, { clientId: uid('a'), username: 'alice', password: Buffer.from('alice-pw') })).returnCode, 0)
  })

  test('[fbroker] a password-file user logs in with MQTT.js and can publish and subscribe', async (t) => {
    const c = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`, { username: 'alice', password: 'alice-pw', clientId: uid('m') })
    const got = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(p.toString())))
    await c.subscribeAsync('pw/test', { qos: 1 })
    await c.publishAsync('pw/test', 'hello', { qos: 1 })
    assert.equal(await got, 'hello')
  })

  test('[fbroker] a legacy unsalted SHA-256 user connects with the right password; the deprecation warning is logged once', async () => {
    assert.equal((await connack(broker.port, { clientId: uid('b'), username: 'bob', password: Buffer.from('bob-pw') })).returnCode, 0)
    assert.equal((await connack(broker.port, { clientId: uid('b'), username: 'bob', password: Buffer.from('alice-pw') })).returnCode, 4)
    await broker.reloadAuth() // the same file again: the warning is not repeated
    const warnings = log.lines.filter((l) => l.level === LEVEL.warn && /deprecated unsalted SHA-256/.test(l.msg))
    assert.equal(warnings.length, 1, JSON.stringify(warnings))
    assert.match(warnings[0]!.msg, /^password file: 1 entry in the deprecated unsalted SHA-256 format \(first on line 2\)/)
  })

  test('[MQTT-3.2.2-4] [MQTT-3.2.2-5] a wrong password, an unknown user or a missing password gets CONNACK 4 with session present 0, then the connection is closed', async () => {
    for (const connect of [
      { username: 'alice', password: Buffer.from('wrong') },
      { username: 'bob', password: Buffer.from('') },
      { username: 'mallory', password: Buffer.from('alice-pw') },
      { username: 'alice' },
    ]) {
      const r = await connack(broker.port, { clientId: uid('w'), ...connect })
      assert.deepEqual(r, { returnCode: 4, sessionPresent: false, closed: true }, JSON.stringify(connect))
    }
  })

  test('[fbroker] MQTT.js reports a refused login as "Bad username or password" (code 4)', async () => {
    const err = await mqtt
      .connectAsync(`mqtt://127.0.0.1:${broker.port}`, { username: 'alice', password: 'nope', reconnectPeriod: 0, connectTimeout: 3000 })
      .then(
        (c) => {
          c.end(true)
          return undefined
        },
        (e: Error & { code?: number }) => e,
      )
    assert.ok(err, 'the connection was accepted')
    assert.equal(err.code, 4, err.message)
  })

  test('[fbroker] without credentials, allow_anonymous unset (false with a password file) refuses with CONNACK 5', async () => {
    const r = await connack(broker.port, { clientId: uid('n') })
    assert.deepEqual(r, { returnCode: 5, sessionPresent: false, closed: true })
  })

  test(
    '[fbroker] mosquitto_pub -u/-P logs in as a $7$ user; with a wrong password it reports "bad user name or password"',
    { skip: !onPath('mosquitto_pub') && 'mosquitto_pub is not installed (scripts/install-system-deps.sh)' },
    async (t) => {
      const sub = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`, { username: 'alice', password: 'alice-pw', clientId: uid('s') })
      const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())))
      await sub.subscribeAsync('mosq/pw', { qos: 1 })
      const ok = await runPub(['-p', String(broker.port), '-u', 'alice', '-P', 'alice-pw', '-t', 'mosq/pw', '-m', 'from-mosquitto', '-q', '1'])
      assert.equal(ok.code, 0, ok.output)
      assert.equal(await got, 'from-mosquitto')
      const bad = await runPub(['-p', String(broker.port), '-u', 'alice', '-P', 'wrong', '-t', 'mosq/pw', '-m', 'x'])
      assert.notEqual(bad.code, 0)
      assert.match(bad.output, /bad user name or password/i)
    },
  )
})

describe('allow_anonymous true with a password file', { skip }, () => {
  let broker: Broker
  let log: ReturnType<typeof capture>
  before(async () => {
    log = capture()
    broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, allowAnonymous: true, logger: log.logger })
  })
  after(() => broker.close())

  test('[fbroker] anonymous clients connect (CONNACK 0) while wrong passwords and unknown users are still refused (4)', async () => {
    assert.equal((await connack(broker.port, { clientId: uid('anon') })).returnCode, 0)
    assert.equal((await connack(broker.port, { clientId: uid('w'), username: 'alice', password: Buffer.from('wrong') })).returnCode, 4)
    assert.equal((await connack(broker.port, { clientId: uid('u'), username: 'nobody', password: Buffer.from('x') })).returnCode, 4)
    assert.equal((await connack(broker.port, { clientId: uid('a'), username: 'alice', password: Buffer.from('alice-pw') })).returnCode, 0)
  })

  test('[fbroker] the startup warns loudly that anonymous clients are allowed although credentials are configured', () => {
    const warn = log.lines.filter((l) => l.level === LEVEL.warn && /allow_anonymous is true while credentials are configured/.test(l.msg))
    assert.equal(warn.length, 1, log.messages().join('\n'))
    assert.equal(broker.authSummary.allowAnonymous, true)
    assert.equal(broker.authSummary.allowAnonymousExplicit, true)
  })
})

describe('password file errors', { skip }, () => {
  test('[fbroker] a malformed line stops Broker.start with a ConfigError naming password_file, the file and the line', async () => {
    const bad = join(dir, 'bad-passwd')
    writeFileSync(bad, `# users\nalice:${sha256Hex('x')}\ncarol:plaintext\n`)
    const err = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile: bad, logger: false }).then(
      async (b) => {
        await b.close()
        return undefined
      },
      (e: unknown) => e,
    )
    assert.ok(err instanceof ConfigError, String(err))
    assert.equal(err.issues.length, 1)
    assert.deepEqual(err.issues[0]!.source, { kind: 'file', path: bad, line: 3 })
    assert.equal(err.issues[0]!.key, 'password_file')
    assert.match(err.message, new RegExp(`^config error in ${escapeRegExp(bad)}:3: key "password_file": unrecognised password hash`))
    assert.doesNotMatch(err.message, /plaintext/, 'the password is not echoed')
  })

  test('[fbroker] a missing password file stops Broker.start with a ConfigError naming the key and the path', async () => {
    const missing = join(dir, 'no-such-file')
    await assert.rejects(Broker.start({ host: '127.0.0.1', port: 0, passwordFile: missing, logger: false }), (e: unknown) => {
      assert.ok(e instanceof ConfigError)
      assert.equal(e.message, `config error in ${missing}: key "password_file": file not found`)
      return true
    })
  })
})

function runPub(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('mosquitto_pub', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
