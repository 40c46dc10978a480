// Starts the broker under test on an ephemeral loopback port.
//
// FBROKER_TEST_TARGET=mosquitto runs the same suite against a local
// Mosquitto 2 instead (useful to check that a test encodes what the spec
// says rather than what fbroker happens to do). Tests that rely on
// fbroker-only options or API are skipped there with
// `{ skip: target === 'mosquitto' && '<why>' }`.
import { spawn, type ChildProcess } from 'node:child_process'
import { after, before } from 'node:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const target: 'fbroker' | 'mosquitto' =
  process.env.FBROKER_TEST_TARGET === 'mosquitto' ? 'mosquitto' : 'fbroker'

/** Options understood by fbroker's `Broker.start` (camelCase config keys). */
export interface TestBrokerOptions {
  maxPacketSize?: number
  maxInflightMessages?: number
  maxQueuedMessages?: number
  maxQueuedBytes?: number
  queueDropPolicy?: 'drop_oldest' | 'drop_new'
  maxTopicLevels?: number
  maxTopicLength?: number
  maxClientIdLength?: number
  maxConnections?: number
  connectTimeoutMs?: number
  sessionExpirySecs?: number
  [key: string]: unknown
}

export interface RunningBroker {
  port: number
  host: string
  url: string
  /** The fbroker `Broker` instance (undefined when the target is mosquitto). */
  broker?: any
  close(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0))
    })
  })
}

export async function startBroker(opts: TestBrokerOptions = {}): Promise<RunningBroker> {
  if (target === 'mosquitto') return startMosquitto(opts)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Broker } = require('fbroker')
  const broker = await Broker.start({ host: '127.0.0.1', port: 0, logger: false, ...opts })
  const port: number = broker.port
  return {
    port,
    host: '127.0.0.1',
    url: `mqtt://127.0.0.1:${port}`,
    broker,
    close: () => broker.close(),
  }
}

/**
 * A broker for the tests of the enclosing describe(): registers a `before`
 * hook that starts it and an `after` hook that runs `beforeClose` (e.g.
 * `closeAll` from ./clients), then closes it. The returned handle may only be
 * used inside tests and hooks, once the broker has started.
 */
export function brokerForSuite(opts: TestBrokerOptions = {}, beforeClose?: () => void): RunningBroker {
  let running: RunningBroker | undefined
  before(async () => {
    running = await startBroker(opts)
  })
  after(async () => {
    beforeClose?.()
    await running?.close()
  })
  const get = (): RunningBroker => {
    if (!running) throw new Error('the suite broker is not running (use it inside a test)')
    return running
  }
  return {
    get port() {
      return get().port
    },
    get host() {
      return get().host
    },
    get url() {
      return get().url
    },
    get broker() {
      return get().broker
    },
    close: () => get().close(),
  }
}

async function startMosquitto(opts: TestBrokerOptions): Promise<RunningBroker> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'fbroker-mosq-'))
  const conf = join(dir, 'mosquitto.conf')
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false']
  if (opts.maxPacketSize) lines.push(`max_packet_size ${opts.maxPacketSize}`)
  if (opts.maxInflightMessages) lines.push(`max_inflight_messages ${opts.maxInflightMessages}`)
  if (opts.maxQueuedMessages) lines.push(`max_queued_messages ${opts.maxQueuedMessages}`)
  writeFileSync(conf, lines.join('\n') + '\n')
  const child: ChildProcess = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' })
  await waitForPort(port)
  return {
    port,
    host: '127.0.0.1',
    url: `mqtt://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}

async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export { sleep } from './wait'
