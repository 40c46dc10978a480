// TLS listeners with client certificates, end to end with the Debian
// Mosquitto clients (mosquitto_pub / mosquitto_sub --cafile --cert --key)
// and node's tls: require_certificate refuses a client without a
// certificate (or with one from another CA) at the handshake, before MQTT;
// use_identity_as_username makes the certificate's CN the user name that
// the ACL file and the clientConnected event see. Bad bytes on a TLS port
// close only that connection.
import { after, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { join } from 'node:path'
import { onPath, tempDir } from '../helpers/auth'
import { target } from '../helpers/broker'
import { startCli } from '../helpers/cli-broker'
import { uid } from '../helpers/clients'
import { connectVia, inbox } from '../helpers/listeners'
import { makeCerts } from '../helpers/tls'
import { sleep } from '../helpers/wait'

const skip = target === 'mosquitto' && 'fbroker listeners configuration'
const missingTools = ['mosquitto_pub', 'mosquitto_sub'].filter((c) => !onPath(c))
const skipTools = skip || (missingTools.length > 0 && `not on PATH: ${missingTools.join(', ')} (install the mosquitto-clients package)`)

const certs = makeCerts({ prefix: 'listeners-tls' })
/** A second, unrelated CA with its own client certificate. */
const strangers = makeCerts({ prefix: 'listeners-tls-other' })
const SENSOR = 'sensor-7'
const sensorCerts = makeCerts({ prefix: 'listeners-tls-sensor', clientCn: SENSOR })

const PROC_TIMEOUT_MS = 8000

interface ProcResult {
  code: number | string
  output: string
}

/** Runs a command to completion (killed after PROC_TIMEOUT_MS); stdout and stderr interleaved. */
function run(cmd: string, args: string[]): { done: Promise<ProcResult>; kill(): void } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), PROC_TIMEOUT_MS)
  const done = new Promise<ProcResult>((resolve) => {
    child.on('error', (e) => resolve({ code: 'spawn error', output: output + String(e) }))
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? signal ?? 'unknown', output })
    })
  })
  return { done, kill: () => child.exitCode === null && child.kill('SIGKILL') }
}

/** mosquitto_pub/_sub arguments for a TLS listener on localhost (the server certificate's name). */
function tlsArgs(port: number, set = certs, clientCert = true): string[] {
  const args = ['-h', 'localhost', '-p', String(port), '--cafile', set.ca]
  if (clientCert) args.push('--cert', set.clientCert, '--key', set.clientKey)
  return args
}

/** Connects node's tls to a TLS port and reports how the connection ended: 'connack' if CONNECT was answered. */
async function tlsConnectOutcome(port: number, opts: { cert?: Buffer; key?: Buffer; ca: Buffer }): Promise<{ outcome: 'connack' | 'closed'; error?: string }> {
  const s: TLSSocket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...opts })
  let error: string | undefined
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message))
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish('closed'), 3000)
    const finish = (outcome: 'connack' | 'closed') => {
      clearTimeout(timer)
      s.destroy()
      resolve({ outcome, error })
    }
    s.on('secureConnect', () => s.write(Buffer.from([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 1, 0x78])))
    s.on('data', (d: Buffer) => {
      if (d[0] === 0x20) finish('connack')
    })
    s.on('close', () => finish('closed'))
  })
}

describe('TLS listener with require_certificate', { skip }, () => {
  let broker: any
  let tlsPort = 0
  let tcpPort = 0
  let wssPort = 0
  const connected: Array<{ clientId: string; username?: string; address: string }> = []
  before(async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      connectTimeoutMs: 1500,
      listeners: [
        { type: 'tcp', port: 0 },
        { type: 'tls', port: 0, cert: certs.cert, key: certs.key, cafile: certs.ca, requireCertificate: true },
        { type: 'wss', port: 0, cert: certs.cert, key: certs.key },
      ],
    })
    broker.on('clientConnected', (e: any) => connected.push(e))
    const bound: Array<{ protocol: string; port: number }> = broker.boundListeners
    tcpPort = bound.find((l) => l.protocol === 'tcp')!.port
    tlsPort = bound.find((l) => l.protocol === 'tls')!.port
    wssPort = bound.find((l) => l.protocol === 'wss')!.port
  })
  after(() => broker?.close())

  /** Starts mosquitto_sub (one message, then exit) and resolves once the broker has its subscription. */
  async function mosquittoSub(args: string[]) {
    const subscribed = new Promise<void>((resolve) => broker.once('subscribed', () => resolve()))
    const sub = run('mosquitto_sub', [...args, '-C', '1', '-v'])
    await Promise.race([subscribed, sub.done.then((r) => assert.fail(`mosquitto_sub exited (${r.code}) before subscribing:\n${r.output}`))])
    return sub
  }

  test('[fbroker] mosquitto_pub --cafile --cert --key publishes over a require_certificate listener to mosquitto_sub with its own client certificate', { skip: skipTools }, async () => {
    const topic = uid('certs/')
    const sub = await mosquittoSub([...tlsArgs(tlsPort), '-t', topic, '-q', '1'])
    const pub = await run('mosquitto_pub', [...tlsArgs(tlsPort), '-t', topic, '-m', 'signed and sealed', '-q', '1']).done
    assert.equal(pub.code, 0, `mosquitto_pub exit status; output:\n${pub.output}`)
    const got = await sub.done
    assert.equal(got.code, 0, `mosquitto_sub exit status; output:\n${got.output}`)
    assert.equal(got.output.trim(), `${topic} signed and sealed`)
  })

  test('[fbroker] mosquitto_pub with a client certificate reaches an MQTT.js subscriber on the TCP listener', { skip: skipTools }, async (t) => {
    const sub = await connectVia(t, 'tcp', tcpPort)
    const box = inbox(sub)
    const topic = uid('certs/')
    await sub.subscribeAsync(topic, { qos: 1 })
    const pub = await run('mosquitto_pub', [...tlsArgs(tlsPort), '-t', topic, '-m', 'hello tcp', '-q', '1']).done
    assert.equal(pub.code, 0, `mosquitto_pub exit status; output:\n${pub.output}`)
    assert.equal((await box.topic(topic)).payload, 'hello tcp')
  })

  test('[fbroker] mosquitto_pub without a client certificate is refused at the TLS handshake: non-zero exit, no MQTT connection, nothing delivered', { skip: skipTools }, async (t) => {
    const sub = await connectVia(t, 'tcp', tcpPort)
    const box = inbox(sub)
    const topic = uid('nocert/')
    await sub.subscribeAsync(topic, { qos: 1 })
    const before = connected.length
    const pub = await run('mosquitto_pub', [...tlsArgs(tlsPort, certs, false), '-t', topic, '-m', 'should not arrive', '-q', '1', '-d']).done
    assert.notEqual(pub.code, 0, `mosquitto_pub exit status; output:\n${pub.output}`)
    assert.doesNotMatch(pub.output, /received CONNACK/, 'no CONNACK: the client never got past TLS')
    assert.match(pub.output, /certificate required|handshake|alert|connection was lost/i, 'the failure is a TLS one')
    await sleep(300)
    assert.deepEqual(box.got, [], 'nothing was delivered')
    assert.deepEqual(connected.slice(before).map((e) => e.clientId), [], 'no clientConnected event')
  })

  test('[fbroker] mosquitto_pub with a client certificate from another CA is refused at the TLS handshake', { skip: skipTools }, async (t) => {
    const sub = await connectVia(t, 'tcp', tcpPort)
    const box = inbox(sub)
    const topic = uid('othercert/')
    await sub.subscribeAsync(topic, { qos: 1 })
    const args = ['-h', 'localhost', '-p', String(tlsPort), '--cafile', certs.ca, '--cert', strangers.clientCert, '--key', strangers.clientKey]
    const pub = await run('mosquitto_pub', [...args, '-t', topic, '-m', 'should not arrive', '-q', '1', '-d']).done
    assert.notEqual(pub.code, 0, `mosquitto_pub exit status; output:\n${pub.output}`)
    assert.doesNotMatch(pub.output, /received CONNACK/)
    await sleep(300)
    assert.deepEqual(box.got, [], 'nothing was delivered')
  })

  test('[fbroker] node tls: with the client certificate CONNECT is answered; without one, or with another CA\'s, the server\'s alert ends the connection before any CONNACK', async () => {
    const files = certs.read()
    const other = strangers.read()
    assert.equal((await tlsConnectOutcome(tlsPort, { ca: files.ca, cert: files.clientCert, key: files.clientKey })).outcome, 'connack')
    const none = await tlsConnectOutcome(tlsPort, { ca: files.ca })
    assert.equal(none.outcome, 'closed')
    assert.match(String(none.error), /CERTIFICATE_REQUIRED|ECONNRESET|alert/i, `error: ${none.error}`)
    const foreign = await tlsConnectOutcome(tlsPort, { ca: files.ca, cert: other.clientCert, key: other.clientKey })
    assert.equal(foreign.outcome, 'closed')
    assert.match(String(foreign.error), /UNKNOWN_CA|BAD_CERTIFICATE|DECRYPT|ECONNRESET|alert/i, `error: ${foreign.error}`)
  })

  test('[fbroker] the server certificate verifies against the CA for localhost and 127.0.0.1, and not against another CA', async () => {
    const files = certs.read()
    for (const servername of ['localhost', undefined]) {
      const s = tlsConnect({ host: '127.0.0.1', port: wssPort, ca: files.ca, ...(servername ? { servername } : {}) })
      await new Promise<void>((resolve, reject) => {
        s.once('secureConnect', () => resolve())
        s.once('error', reject)
      })
      assert.equal(s.authorized, true)
      s.destroy()
    }
    const s = tlsConnect({ host: '127.0.0.1', port: wssPort, ca: strangers.read().ca, servername: 'localhost' })
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => s.once('error', resolve))
    s.destroy()
    assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/, String(err))
  })

  // ---- bad input on a TLS port ---------------------------------------------------

  /** An MQTT.js client with a client certificate on the tls listener, connected before the bad input. */
  async function tlsBystander(t: TestContext) {
    const c = await connectVia(t, 'tls', tlsPort, certs, { clientCert: true })
    let closed = false
    c.on('close', () => (closed = true))
    const box = inbox(c)
    const topic = uid('bystander/')
    await c.subscribeAsync(topic, { qos: 1 })
    return {
      async stillWorks() {
        assert.equal(closed, false, 'the TLS bystander was disconnected')
        await c.publishAsync(topic, 'still here', { qos: 1 })
        await box.count(1)
        assert.equal(box.got[0]!.payload, 'still here')
      },
    }
  }

  async function rawTcp(t: TestContext, port: number): Promise<{ s: Socket; closed: Promise<void>; received: () => Buffer }> {
    const s = netConnect(port, '127.0.0.1')
    t.after(() => s.destroy())
    s.on('error', () => {})
    let received = Buffer.alloc(0)
    s.on('data', (d: Buffer) => (received = Buffer.concat([received, d])))
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve())
      s.once('error', reject)
    })
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()))
    return { s, closed, received: () => received }
  }

  async function closesWithin(closed: Promise<void>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const r = await Promise.race([closed.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))])
    clearTimeout(timer)
    return r
  }

  test('[fbroker] garbage instead of a TLS ClientHello closes that connection (at most a TLS alert comes back); a TLS client on the same listener keeps working', async (t) => {
    const other = await tlsBystander(t)
    for (const garbage of [
      Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'),
      Buffer.from([0x10, 0x0d, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 1, 0x78]), // a plaintext MQTT CONNECT
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]), // a handshake record that is not a ClientHello
    ]) {
      const raw = await rawTcp(t, tlsPort)
      raw.s.write(garbage)
      assert.ok(await closesWithin(raw.closed, 2000), `still open after ${JSON.stringify(garbage.toString('latin1'))}`)
      const back = raw.received()
      // Nothing but (optionally) a TLS alert record: content type 21.
      assert.ok(back.length === 0 || back[0] === 0x15, `unexpected reply ${back.toString('hex')}`)
    }
    await other.stillWorks()
  })

  test('[fbroker] a connection that never sends a ClientHello is closed after connect_timeout_ms', async (t) => {
    const raw = await rawTcp(t, tlsPort)
    const started = Date.now()
    assert.ok(await closesWithin(raw.closed, 5000), 'still open 5 s after connecting (connect_timeout_ms is 1500)')
    assert.ok(Date.now() - started >= 1000, `closed after ${Date.now() - started} ms, before the connect timeout`)
  })
})

describe('TLS listener with use_identity_as_username', { skip }, () => {
  let broker: any
  let tlsPort = 0
  let tcpPort = 0
  const connected: Array<{ clientId: string; username?: string; address: string }> = []
  before(async () => {
    const dir = tempDir('listeners-identity')
    const aclFile = join(dir, 'acl')
    // sensor-7 (the certificate's CN) may use its own subtree; mallory (the user name its CONNECT
    // claims) could write anywhere; watcher, on the TCP listener, reads everything.
    writeFileSync(aclFile, `user ${SENSOR}\ntopic readwrite devices/${SENSOR}/#\n\nuser mallory\ntopic readwrite #\n\nuser watcher\ntopic read #\n`)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      aclFile,
      listeners: [
        { type: 'tcp', port: 0 },
        {
          type: 'tls',
          port: 0,
          cert: sensorCerts.cert,
          key: sensorCerts.key,
          cafile: sensorCerts.ca,
          requireCertificate: true,
          useIdentityAsUsername: true,
        },
      ],
    })
    broker.on('clientConnected', (e: any) => connected.push(e))
    tlsPort = broker.boundListeners.find((l: any) => l.protocol === 'tls').port
    tcpPort = broker.boundListeners.find((l: any) => l.protocol === 'tcp').port
  })
  after(() => broker?.close())

  test('[fbroker] the certificate CN is the user name in clientConnected, replacing the CONNECT user name', async (t) => {
    const clientId = uid('cn')
    await connectVia(t, 'tls', tlsPort, sensorCerts, { clientCert: true, clientId, username: 'mallory', password: 'whatever' })
    const deadline = Date.now() + 2000
    while (!connected.some((e) => e.clientId === clientId) && Date.now() < deadline) await sleep(20)
    const e = connected.find((c) => c.clientId === clientId)
    assert.ok(e, 'clientConnected event')
    assert.equal(e.username, SENSOR)
  })

  test('[fbroker] mosquitto_pub with the sensor-7 certificate may publish where the ACL lets user sensor-7 write, and not elsewhere, even when it claims to be mallory', { skip: skipTools }, async (t) => {
    // The CN's rights, not mallory's: the certificate holder cannot subscribe outside its subtree.
    const device = await connectVia(t, 'tls', tlsPort, sensorCerts, { clientCert: true, username: 'mallory' })
    await assert.rejects(device.subscribeAsync('devices/other/#', { qos: 1 }), /Subscribe error/, 'SUBACK 0x80 outside devices/sensor-7/')
    const watcher = await connectVia(t, 'tcp', tcpPort, undefined, { username: 'watcher' })
    const box = inbox(watcher)
    await watcher.subscribeAsync('devices/#', { qos: 1 })
    const args = tlsArgs(tlsPort, sensorCerts)
    const denied = await run('mosquitto_pub', [...args, '-u', 'mallory', '-t', 'devices/other/temp', '-m', 'not allowed', '-q', '1']).done
    assert.equal(denied.code, 0, `the denied publish is still acknowledged; output:\n${denied.output}`)
    const allowed = await run('mosquitto_pub', [...args, '-u', 'mallory', '-t', `devices/${SENSOR}/temp`, '-m', '21.5', '-q', '1']).done
    assert.equal(allowed.code, 0, `mosquitto_pub exit status; output:\n${allowed.output}`)
    await box.topic(`devices/${SENSOR}/temp`)
    await sleep(200)
    assert.deepEqual(box.got.map((m) => `${m.topic} ${m.payload}`), [`devices/${SENSOR}/temp 21.5`])
  })
})

describe('use_identity_as_username with a password file', { skip }, () => {
  let broker: any
  let tlsPort = 0
  let tcpPort = 0
  const connected: Array<{ clientId: string; username?: string }> = []
  before(async () => {
    const dir = tempDir('listeners-identity-pw')
    const passwordFile = join(dir, 'passwd')
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker, hashPassword } = require('fbroker')
    writeFileSync(passwordFile, `watcher:${await hashPassword('watcher-pw', { iterations: 1000 })}\n`)
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      passwordFile,
      listeners: [
        { type: 'tcp', port: 0 },
        { type: 'tls', port: 0, cert: sensorCerts.cert, key: sensorCerts.key, cafile: sensorCerts.ca, requireCertificate: true, useIdentityAsUsername: true },
      ],
    })
    broker.on('clientConnected', (e: any) => connected.push(e))
    tlsPort = broker.boundListeners.find((l: any) => l.protocol === 'tls').port
    tcpPort = broker.boundListeners.find((l: any) => l.protocol === 'tcp').port
  })
  after(() => broker?.close())

  test('[fbroker] the verified certificate stands in for the password (as in Mosquitto): a certificate client without credentials connects as its CN, while a TCP client without them is refused (CONNACK 5)', async (t) => {
    const clientId = uid('cert-only')
    await connectVia(t, 'tls', tlsPort, sensorCerts, { clientCert: true, clientId })
    await waitForEvent(connected, clientId)
    assert.equal(connected.find((e) => e.clientId === clientId)?.username, SENSOR)
    await assert.rejects(connectVia(t, 'tcp', tcpPort), /Not authorized|Connection refused/i)
    await connectVia(t, 'tcp', tcpPort, undefined, { username: 'watcher', password: 'watcher-pw' })
  })
})

async function waitForEvent(events: Array<{ clientId: string }>, clientId: string): Promise<void> {
  const deadline = Date.now() + 2000
  while (!events.some((e) => e.clientId === clientId) && Date.now() < deadline) await sleep(20)
  assert.ok(events.some((e) => e.clientId === clientId), `no clientConnected event for ${clientId}`)
}

test('[fbroker] fbroker start --tls-port --cert --key --cafile --require-certificate: mosquitto_pub with a client certificate is delivered, without one it is refused', { skip: skipTools, timeout: 60_000 }, async (t) => {
  const cli = await startCli([
    '--host', '127.0.0.1',
    '--port', '0',
    '--tls-port', '0',
    '--cert', certs.cert,
    '--key', certs.key,
    '--cafile', certs.ca,
    '--require-certificate',
  ])
  t.after(() => cli.stop())
  const tls = cli.of('tls')
  assert.equal(tls.length, 1)
  const banner = cli.entries.find((e) => e.listener === tls[0]!.url)
  assert.match(String(banner?.msg), /client certificate required/)
  const sub = await connectVia(t, 'tcp', cli.of('tcp')[0]!.port)
  const box = inbox(sub)
  const topic = uid('cli-certs/')
  await sub.subscribeAsync(topic, { qos: 1 })
  const refused = await run('mosquitto_pub', [...tlsArgs(tls[0]!.port, certs, false), '-t', topic, '-m', 'no cert', '-q', '1']).done
  assert.notEqual(refused.code, 0, `mosquitto_pub without a certificate; output:\n${refused.output}`)
  const ok = await run('mosquitto_pub', [...tlsArgs(tls[0]!.port), '-t', topic, '-m', 'with cert', '-q', '1']).done
  assert.equal(ok.code, 0, `mosquitto_pub with a certificate; output:\n${ok.output}`)
  await box.topic(topic)
  await sleep(100)
  assert.deepEqual(box.got.map((m) => m.payload), ['with cert'])
  assert.equal(await cli.stop(), 0)
})

describe('TLS listener startup errors', { skip }, () => {
  test('[fbroker] a certificate file that is not PEM stops the start with an error naming the file; a missing one names the key and the file', async () => {
    const dir = tempDir('listeners-tls-bad')
    const garbage = join(dir, 'garbage.pem')
    writeFileSync(garbage, 'this is not a certificate\n')
    await assert.rejects(
      startCli(['--host', '127.0.0.1', '--port', '0', '--tls-port', '0', '--cert', garbage, '--key', certs.key]),
      (err: Error) => err.message.includes(garbage) && /exited \(1\)/.test(err.message),
    )
    const missing = join(dir, 'missing.pem')
    await assert.rejects(
      startCli(['--host', '127.0.0.1', '--port', '0', '--tls-port', '0', '--cert', missing, '--key', certs.key]),
      (err: Error) => err.message.includes(missing) && /cert/.test(err.message) && /exited \(2\)/.test(err.message),
    )
  })
})
