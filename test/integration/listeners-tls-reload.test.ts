// `fbroker start --tls-port --wss-port --cert --key` as a process: new
// certificates written over the old files take effect on SIGHUP for new
// handshakes, while connections made before keep working; a broken key file
// is logged and the previous certificate stays in force.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { tempDir } from '../helpers/auth'
import { target } from '../helpers/broker'
import { startCli } from '../helpers/cli-broker'
import { uid } from '../helpers/clients'
import { connectVia, inbox } from '../helpers/listeners'
import { certSetIn, gencert } from '../helpers/tls'

const skip = target === 'mosquitto' && 'the fbroker CLI'

/** Completes a TLS handshake against `ca` (servername localhost); resolves 'ok' or the error code. */
function handshake(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca })
    const timer = setTimeout(() => done('timeout'), 3000)
    const done = (r: string) => {
      clearTimeout(timer)
      s.destroy()
      resolve(r)
    }
    s.once('secureConnect', () => done(s.authorized ? 'ok' : `unauthorized: ${s.authorizationError}`))
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message))
  })
}

const NOT_TRUSTED = /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE/

test('[fbroker] SIGHUP reloads the TLS certificates: connections made before keep working, new handshakes verify against the new CA and not the old one; a broken key file keeps the previous certificate', { skip, timeout: 60_000 }, async (t) => {
  const dir = tempDir('tls-reload')
  gencert(dir)
  const certs = certSetIn(dir)
  const oldCa = certs.read().ca
  const cli = await startCli([
    '--host', '127.0.0.1',
    '--port', '0',
    '--tls-port', '0',
    '--wss-port', '0',
    '--ws-port', '0',
    '--ws-path', '/live',
    '--cert', certs.cert,
    '--key', certs.key,
  ])
  t.after(() => cli.stop())
  const tlsPort = cli.of('tls')[0]!.port
  const wssPort = cli.of('wss')[0]!.port
  assert.deepEqual(cli.listeners.map((l) => l.protocol), ['tcp', 'tls', 'ws', 'wss'])
  assert.equal(cli.of('ws')[0]!.url, `ws://127.0.0.1:${cli.of('ws')[0]!.port}/live`)

  // Clients connected with the old CA, on both TLS listeners, plus a ws client on the custom path.
  const before = await connectVia(t, 'tls', tlsPort, certs)
  const beforeWss = await connectVia(t, 'wss', wssPort, certs, { path: '/live' })
  const wsClient = await connectVia(t, 'ws', cli.of('ws')[0]!.port, undefined, { path: '/live' })
  let dropped = 0
  for (const c of [before, beforeWss, wsClient]) c.on('close', () => dropped++)
  const box = inbox(before)
  const wssBox = inbox(beforeWss)
  const topic = uid('reload/')
  await before.subscribeAsync(`${topic}/#`, { qos: 1 })
  await beforeWss.subscribeAsync(`${topic}/#`, { qos: 1 })

  // New files on disk (a new CA): not in force until SIGHUP.
  gencert(dir)
  const newCa = certs.read().ca
  assert.notDeepEqual(newCa, oldCa)
  assert.match(await handshake(tlsPort, newCa), NOT_TRUSTED, 'before SIGHUP, the old certificate is still served')
  assert.equal(await handshake(tlsPort, oldCa), 'ok')

  let mark = cli.entries.length
  process.kill(cli.pid, 'SIGHUP')
  const reloaded = await cli.waitFor(/^received SIGHUP, TLS certificates reloaded/, 10_000, mark)
  assert.match(reloaded.msg, /2 of 2 TLS listeners/)

  // The connections made before the reload never noticed.
  await wsClient.publishAsync(`${topic}/a`, 'after reload', { qos: 1 })
  await box.count(1)
  await wssBox.count(1)
  await before.publishAsync(`${topic}/b`, 'old tls client publishes', { qos: 1 })
  await box.count(2)
  assert.deepEqual(box.got.map((m) => m.payload), ['after reload', 'old tls client publishes'])
  assert.equal(dropped, 0, 'a connection made before SIGHUP was dropped')

  // New handshakes: the new CA verifies, the old one does not, on both listeners.
  for (const port of [tlsPort, wssPort]) {
    assert.equal(await handshake(port, newCa), 'ok', `new CA on port ${port}`)
    assert.match(await handshake(port, oldCa), NOT_TRUSTED, `old CA on port ${port}`)
  }
  const fresh = await connectVia(t, 'tls', tlsPort, certs)
  await fresh.publishAsync(`${topic}/c`, 'new tls client', { qos: 1 })
  await box.count(3)

  // A broken key: logged, the certificate loaded before stays in force, nothing is dropped.
  writeFileSync(certs.key, 'not a key\n')
  mark = cli.entries.length
  process.kill(cli.pid, 'SIGHUP')
  const failed = await cli.waitFor(/^received SIGHUP, TLS reload failed/, 10_000, mark)
  assert.ok(failed.level >= 50, 'logged as an error')
  assert.match(failed.msg, /server\.key/, 'the message names the key file')
  assert.equal(await handshake(tlsPort, newCa), 'ok', 'the previous (new-CA) certificate is still served')
  await before.publishAsync(`${topic}/d`, 'still connected', { qos: 1 })
  await box.count(4)
  assert.equal(dropped, 0)

  assert.equal(await cli.stop(), 0, `exit code; stderr: ${cli.stderr()}`)
})
