// Interoperability with the Debian `mosquitto_pub` / `mosquitto_sub` command
// line clients (package mosquitto-clients), over MQTT 3.1.1 and 3.1.
//
// Each test starts its own broker so that a `#` subscription sees only that
// test's messages. Every spawned process is killed after PROC_TIMEOUT_MS.
import { afterEach, beforeEach, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { startBroker, type RunningBroker } from '../helpers/broker'

const PROC_TIMEOUT_MS = 5000

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, cmd)))
}
const missing = ['mosquitto_sub', 'mosquitto_pub'].filter((c) => !onPath(c))

interface Proc {
  /** stdout and stderr so far, interleaved. */
  output(): string
  /** Resolves when the output matches `re`; rejects if the process exits first or after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<void>
  /** Exit code (or the signal name if killed). */
  exited: Promise<number | string>
  kill(): void
}

const running = new Set<Proc>()

// mosquitto_sub block-buffers stdout into a pipe; coreutils' stdbuf makes it
// line-buffered so that its -d lines can be watched as they happen.
const haveStdbuf = onPath('stdbuf')

function run(cmd: string, args: string[]): Proc {
  const child = haveStdbuf
    ? spawn('stdbuf', ['-oL', '-eL', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const watchers = new Set<() => void>()
  const onData = (d: Buffer) => {
    out += d.toString()
    for (const w of [...watchers]) w()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const timer = setTimeout(() => child.kill('SIGKILL'), PROC_TIMEOUT_MS)
  const exited = new Promise<number | string>((resolve) => {
    child.on('error', (e) => {
      out += String(e)
      resolve('spawn error')
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      for (const w of [...watchers]) w()
      resolve(code ?? signal ?? 'unknown')
    })
  })
  let done = false
  void exited.then(() => (done = true))
  const proc: Proc = {
    output: () => out,
    exited,
    kill: () => {
      if (!done) child.kill('SIGKILL')
    },
    waitFor: (re, ms = 3000) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => finish(new Error(`${cmd}: no ${re} within ${ms} ms; output:\n${out}`)), ms)
        const finish = (err?: Error) => {
          clearTimeout(t)
          watchers.delete(check)
          if (err) reject(err)
          else resolve()
        }
        const check = () => {
          if (re.test(out)) finish()
          else if (done || child.exitCode !== null) finish(new Error(`${cmd} exited (${child.exitCode}) before ${re}; output:\n${out}`))
        }
        watchers.add(check)
        check()
      }),
  }
  running.add(proc)
  void exited.then(() => running.delete(proc))
  return proc
}

/** The lines mosquitto_sub -v printed for messages, without its -d debug lines. */
function messageLines(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l !== '' && !/^Client \S+ (sending|received) /.test(l) && !/^Subscribed \(mid/.test(l))
}

const SUBSCRIBED = /Subscribed \(mid: \d+\)|received SUBACK/

describe('interop with mosquitto_pub / mosquitto_sub', { skip: missing.length > 0 && `not on PATH: ${missing.join(', ')} (install the mosquitto-clients package)` }, () => {
  let b: RunningBroker
  beforeEach(async () => {
    b = await startBroker()
  })
  afterEach(async () => {
    for (const p of running) p.kill()
    await b?.close()
  })

  const hp = () => ['-h', '127.0.0.1', '-p', String(b.port)]

  /** Starts mosquitto_sub and resolves once its subscription is in place. */
  async function subscriber(args: string[]): Promise<Proc> {
    const subscribed =
      b.broker && !haveStdbuf
        ? new Promise<void>((resolve) => b.broker.once('subscribed', () => resolve()))
        : undefined
    const sub = run('mosquitto_sub', [...hp(), '-v', '-C', '1', '-d', ...args])
    if (haveStdbuf) await sub.waitFor(SUBSCRIBED)
    else if (subscribed) await subscribed
    else await new Promise((r) => setTimeout(r, 500)) // no way to watch it: give it time
    return sub
  }

  /** Subscribes with mosquitto_sub, publishes with mosquitto_pub, returns the subscriber's output. */
  async function roundTrip(subArgs: string[], pubArgs: string[]) {
    const sub = await subscriber(subArgs)
    const pub = run('mosquitto_pub', [...hp(), ...pubArgs])
    const [pubExit, subExit] = await Promise.all([pub.exited, sub.exited])
    assert.equal(pubExit, 0, `mosquitto_pub exit status; output:\n${pub.output()}`)
    assert.equal(subExit, 0, `mosquitto_sub exit status; output:\n${sub.output()}`)
    return sub.output()
  }

  test('[fbroker] mosquitto_sub -t "#" prints "a/b hi" sent by mosquitto_pub -q 2 (subscription QoS 0)', async () => {
    const out = await roundTrip(['-t', '#'], ['-t', 'a/b', '-m', 'hi', '-q', '2'])
    assert.deepEqual(messageLines(out), ['a/b hi'])
    assert.match(out, /received PUBLISH \(d0, q0, r0, m\d+, 'a\/b'/, 'delivered at the subscription QoS 0')
  })

  test('[fbroker] mosquitto_sub -q 2 receives a QoS 2 message from mosquitto_pub -q 2 through the whole QoS 2 flow', async () => {
    const out = await roundTrip(['-t', '#', '-q', '2'], ['-t', 'a/b', '-m', 'hi', '-q', '2'])
    assert.deepEqual(messageLines(out), ['a/b hi'])
    assert.match(out, /received PUBLISH \(d0, q2, r0, m\d+, 'a\/b'/)
    assert.match(out, /sending PUBREC/)
    assert.match(out, /received PUBREL/)
    assert.match(out, /sending PUBCOMP/)
  })

  test('[fbroker] a message retained with mosquitto_pub -r reaches a later mosquitto_sub, flagged retained', async () => {
    const pub = run('mosquitto_pub', [...hp(), '-t', 'ret/x', '-m', 'kept', '-q', '1', '-r'])
    assert.equal(await pub.exited, 0, `mosquitto_pub exit status; output:\n${pub.output()}`)
    const sub = run('mosquitto_sub', [...hp(), '-v', '-C', '1', '-d', '-q', '1', '-t', 'ret/#'])
    assert.equal(await sub.exited, 0, `mosquitto_sub exit status; output:\n${sub.output()}`)
    assert.deepEqual(messageLines(sub.output()), ['ret/x kept'])
    assert.match(sub.output(), /received PUBLISH \(d0, q1, r1, m\d+, 'ret\/x'/)
  })

  for (const [version, label] of [
    ['mqttv311', 'MQTT 3.1.1'],
    ['mqttv31', 'MQTT 3.1 (MQIsdp)'],
  ] as const) {
    test(`[fbroker] mosquitto_pub and mosquitto_sub speaking ${label} (-V ${version}) at QoS 0, 1 and 2`, async () => {
      for (const qos of ['0', '1', '2']) {
        const out = await roundTrip(
          ['-V', version, '-q', qos, '-t', `v/${version}/#`],
          ['-V', version, '-q', qos, '-t', `v/${version}/q${qos}`, '-m', `hi ${qos}`],
        )
        assert.deepEqual(messageLines(out), [`v/${version}/q${qos} hi ${qos}`], `QoS ${qos}`)
        assert.match(out, new RegExp(`received PUBLISH \\(d0, q${qos}, r0`), `QoS ${qos}`)
      }
    })
  }
})
