// `fbroker start --password-file F` as a process: SIGHUP re-reads the file
// without dropping connections, a bad file is logged and keeps the old one,
// and SIGTERM still exits 0.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { connack, passwdAdd, tempDir } from '../helpers/auth'
import { target } from '../helpers/broker'
import { startCli } from '../helpers/cli-broker'

const skip = target === 'mosquitto' && 'the fbroker CLI'
const dir = tempDir('sighup')

describe('fbroker start and SIGHUP', { skip }, () => {
  test('[fbroker] SIGHUP re-reads the password file: a user added by fbroker passwd -b connects, the connected client stays connected; a bad file is logged and kept out; SIGTERM exits 0', { timeout: 60_000 }, async () => {
    const file = join(dir, 'passwd')
    passwdAdd(file, 'old', 'old-pw', { create: true })
    const logs = await startCli(['--port', '0', '--host', '127.0.0.1', '--password-file', file])
    const child = logs.child
    const port = logs.of('tcp')[0]!.port
    const clients: MqttClient[] = []
    try {
      const banner = await logs.waitFor(/^auth: /)
      assert.match(banner.msg, new RegExp(`^auth: password file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(1 user\\), no ACL, anonymous clients refused \\(allow_anonymous unset\\)$`))

      const url = `mqtt://127.0.0.1:${port}`
      const connect = (username: string, password: string) =>
        mqtt.connectAsync(url, { username, password, clientId: `${username}-${Date.now()}`, reconnectPeriod: 0, connectTimeout: 5000 })
      const old = await connect('old', 'old-pw')
      clients.push(old)
      let oldDisconnected = false
      old.on('close', () => (oldDisconnected = true))
      const oldGot: string[] = []
      old.on('message', (topic, payload) => oldGot.push(`${topic} ${payload}`))
      await old.subscribeAsync('hup/#', { qos: 1 })

      // Added to the file, but not loaded yet.
      passwdAdd(file, 'new', 'new-pw')
      assert.equal((await connack(port, { clientId: 'probe-1', username: 'new', password: Buffer.from('new-pw') })).returnCode, 4)

      const mark = logs.entries.length
      assert.ok(child.pid !== undefined)
      process.kill(child.pid, 'SIGHUP')
      const reloaded = await logs.waitFor(/^received SIGHUP, auth files reloaded/, 10_000, mark)
      assert.match(reloaded.msg, /password file .* \(2 users\)/)

      const fresh = await connect('new', 'new-pw')
      clients.push(fresh)
      const freshGot: string[] = []
      fresh.on('message', (topic, payload) => freshGot.push(`${topic} ${payload}`))
      await fresh.subscribeAsync('back/#', { qos: 1 })
      // The old client never left: it still receives, and still publishes.
      await fresh.publishAsync('hup/to-old', 'hello old', { qos: 1 })
      await old.publishAsync('back/to-new', 'hello new', { qos: 1 })
      const deadline = Date.now() + 3000
      while ((oldGot.length === 0 || freshGot.length === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      assert.deepEqual(oldGot, ['hup/to-old hello old'])
      assert.deepEqual(freshGot, ['back/to-new hello new'])
      assert.equal(oldDisconnected, false, 'the client connected before SIGHUP was disconnected')

      // A malformed file: logged as an error, the broker keeps running with the users it had.
      appendFileSync(file, 'broken-line-without-a-hash\n')
      const mark2 = logs.entries.length
      process.kill(child.pid, 'SIGHUP')
      const failed = await logs.waitFor(/^received SIGHUP, reload failed/, 10_000, mark2)
      assert.ok(failed.level >= 50, 'logged as an error')
      assert.match(failed.msg, /key "password_file": /)
      assert.match(failed.msg, /:3: /, 'the line is named')
      assert.equal(child.exitCode, null, 'the broker is still running')
      assert.equal((await connack(port, { clientId: 'probe-2', username: 'new', password: Buffer.from('new-pw') })).returnCode, 0)
      assert.equal(old.connected, true)

      for (const c of clients.splice(0)) await c.endAsync()
      assert.equal(await logs.stop(), 0, logs.stderr())
      await logs.waitFor(/^received SIGTERM/, 1000)
    } finally {
      for (const c of clients) c.end(true)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })
})
