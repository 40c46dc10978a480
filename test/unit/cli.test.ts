import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { createInterface } from 'node:readline'
import { after, describe, test } from 'node:test'
import { connectAsync } from 'mqtt'
import { createLogger } from 'fbroker'
import { listenerText, listenerUrl, reloadTlsOnSignal } from 'fbroker/dist/cli/start'

const root = path.resolve(__dirname, '..', '..')
const cli = path.join(root, 'packages', 'fbroker', 'dist', 'cli', 'main.js')
const pkg = JSON.parse(readFileSync(path.join(root, 'packages', 'fbroker', 'package.json'), 'utf8')) as { version: string }
const bindingDir = path.join(root, 'packages', 'binding')
const bindingBuilt = existsSync(bindingDir) && readdirSync(bindingDir).some((f) => f.endsWith('.node'))

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-cli-test-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** The test runner's environment without any FBROKER_* variable, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FBROKER_')) env[k] = v
  return { ...env, ...extra }
}

function run(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [cli, ...args], { cwd: dir, env: cleanEnv(env), encoding: 'utf8', timeout: 20_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

describe('fbroker CLI', () => {
  test('the built entry point starts with a node shebang', () => {
    assert.ok(readFileSync(cli, 'utf8').startsWith('#!/usr/bin/env node\n'))
  })

  test('--help lists the start command and exits 0', () => {
    const { code, stdout } = run(['--help'])
    assert.equal(code, 0)
    assert.match(stdout, /^Usage: fbroker /m)
    assert.match(stdout, /^\s+start \[options\]/m)
    assert.match(stdout, /--version/)
  })

  test('--version prints the package version and exits 0', () => {
    const { code, stdout } = run(['--version'])
    assert.equal(code, 0)
    assert.equal(stdout.trim(), pkg.version)
  })

  test('start --help documents the flags and every setting with its environment variable', () => {
    const { code, stdout } = run(['start', '--help'])
    assert.equal(code, 0)
    for (const flag of ['--config <file>', '--port <port>', '--host <host>', '--log-level <level>']) assert.ok(stdout.includes(flag), flag)
    assert.match(stdout, /max_inflight_messages\s+FBROKER_MAX_INFLIGHT_MESSAGES\s+20/)
    assert.match(stdout, /Precedence: command-line flags > FBROKER_\* environment variables > config file > defaults/)
  })

  test('start with an invalid config file exits 2 naming the key and the file, without a stack trace', () => {
    const bad = path.join(dir, 'bad.yaml')
    writeFileSync(bad, 'port: 1883\nmax_inflight_messages: abc\n')
    const { code, stdout, stderr } = run(['start', '--config', bad])
    assert.equal(code, 2)
    assert.equal(
      stderr.trim(),
      `config error in ${bad}:2: key "max_inflight_messages": expected an integer between 1 and 65535, got "abc"`,
    )
    assert.doesNotMatch(stderr, /\n\s+at /)
    assert.equal(stdout, '')
  })

  test('start with a relative config path names the resolved file and suggests the near-miss key', () => {
    writeFileSync(path.join(dir, 'typo.yml'), 'max_conections: 5\n')
    const { code, stderr } = run(['start', '-c', 'typo.yml'])
    assert.equal(code, 2)
    assert.ok(stderr.includes(path.join(dir, 'typo.yml')), stderr)
    assert.match(stderr, /key "max_conections": unknown key; did you mean "max_connections"\?/)
  })

  test('start with a missing config file exits 2 naming the file', () => {
    const { code, stderr } = run(['start', '--config', 'nope.yaml'])
    assert.equal(code, 2)
    assert.equal(stderr.trim(), `config error in ${path.join(dir, 'nope.yaml')}: config file not found`)
  })

  test('an invalid environment variable exits 2 naming the variable', () => {
    const { code, stderr } = run(['start'], { FBROKER_MAX_CONNECTIONS: 'lots' })
    assert.equal(code, 2)
    assert.match(stderr, /^config error in environment variable FBROKER_MAX_CONNECTIONS: key "max_connections"/)
  })

  test('an invalid flag value exits 2 naming the flag', () => {
    const { code, stderr } = run(['start', '--port', '65536'])
    assert.equal(code, 2)
    assert.match(stderr, /^config error in command-line flag --port: key "port": expected an integer between 0 and 65535, got 65536/)
  })

  test('start --help documents the auth flags and SIGHUP', () => {
    const { code, stdout } = run(['start', '--help'])
    assert.equal(code, 0)
    for (const flag of ['--password-file <file>', '--acl-file <file>', '--allow-anonymous <true|false>', '--plugin <file>']) assert.ok(stdout.includes(flag), flag)
    assert.match(stdout, /SIGHUP re-reads the\s+password and ACL files\s+and the\s+TLS certificates/)
    assert.match(stdout, /allow_anonymous\s+FBROKER_ALLOW_ANONYMOUS\s+auto: false when an auth source is configured/)
  })

  test('an invalid --allow-anonymous exits 2 naming the flag', () => {
    const { code, stderr } = run(['start', '--allow-anonymous', 'maybe'])
    assert.equal(code, 2)
    assert.match(stderr, /^config error in command-line flag --allow-anonymous: key "allow_anonymous": expected true, false, 1 or 0, got "maybe"/)
  })

  test(
    'a missing --password-file or --plugin exits 2 naming the key or the module',
    { skip: bindingBuilt ? false : 'packages/binding has no built .node module' },
    () => {
      const pw = run(['start', '--port', '0', '--password-file', 'missing-passwd'], { FBROKER_LOG_FORMAT: 'json' })
      assert.equal(pw.code, 2, pw.stdout + pw.stderr)
      const messages = (out: string) => out.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg)
      assert.ok(messages(pw.stdout).includes(`cannot start the broker: config error in ${path.join(dir, 'missing-passwd')}: key "password_file": file not found`), pw.stdout)
      const plugin = run(['start', '--port', '0', '--plugin', './missing-plugin.mjs'], { FBROKER_LOG_FORMAT: 'json' })
      assert.equal(plugin.code, 2, plugin.stdout + plugin.stderr)
      assert.ok(messages(plugin.stdout).includes(`cannot start the broker: plugin ${path.join(dir, 'missing-plugin.mjs')}: file not found`), plugin.stdout)
    },
  )

  test('start --help documents the listener flags, their settings and the combining rule', () => {
    const { code, stdout } = run(['start', '--help'])
    assert.equal(code, 0)
    for (const flag of [
      '--tls-port <port>',
      '--ws-port <port>',
      '--wss-port <port>',
      '--cert <file>',
      '--key <file>',
      '--cafile <file>',
      '--require-certificate [true|false]',
      '--ws-path <path>',
    ]) {
      assert.ok(stdout.includes(flag), flag)
    }
    assert.match(stdout, /tls_port\s+FBROKER_TLS_PORT\s+none \(no TLS listener\)/)
    assert.match(stdout, /listeners\s+FBROKER_LISTENERS\s+none: one TCP listener on host:port/)
    assert.match(stdout, /A config file with a listeners list replaces the TCP listener on port 1883/)
  })

  test('--tls-port without --cert and --key exits 2 naming each missing key and the flag', () => {
    const { code, stdout, stderr } = run(['start', '--tls-port', '8883'])
    assert.equal(code, 2)
    assert.equal(stdout, '')
    assert.deepEqual(stderr.trim().split('\n'), [
      'config error in command-line flag --tls-port: key "cert": required when tls_port is set (set it with --cert, FBROKER_CERT or cert in the config file)',
      'config error in command-line flag --tls-port: key "key": required when tls_port is set (set it with --key, FBROKER_KEY or key in the config file)',
    ])
  })

  test('--wss-port with a missing --cert file and a bare --require-certificate without --cafile exit 2 naming each key', () => {
    writeFileSync(path.join(dir, 'server.key'), 'not checked at load time\n')
    const { code, stderr } = run(['start', '--wss-port', '8884', '--cert', 'missing.pem', '--key', 'server.key', '--require-certificate'])
    assert.equal(code, 2)
    assert.deepEqual(stderr.trim().split('\n'), [
      'config error in command-line flag --require-certificate: key "require_certificate": needs cafile: the CA certificates that client certificates are verified against',
      `config error in command-line flag --cert: key "cert": cannot read ${path.join(dir, 'missing.pem')}: file not found`,
    ])
  })

  test('a bad listeners item in the config file exits 2 naming the file, the line and the key path', () => {
    const bad = path.join(dir, 'listeners.yaml')
    writeFileSync(bad, ['listeners:', '  - type: ws', '    port: 8080', '    path: mqtt', '  - type: tls', '    port: 8883', ''].join('\n'))
    const { code, stderr } = run(['start', '--config', bad])
    assert.equal(code, 2)
    assert.deepEqual(stderr.trim().split('\n'), [
      `config error in ${bad}:4: key "listeners[0].path": expected a URL path starting with "/" (no spaces, query or fragment), got "mqtt"`,
      `config error in ${bad}:5: key "listeners[1].cert": required for a tls listener`,
      `config error in ${bad}:5: key "listeners[1].key": required for a tls listener`,
    ])
  })

  test('an unknown option is a usage error: exit 2', () => {
    const { code, stderr } = run(['start', '--prot', '1883'])
    assert.equal(code, 2)
    assert.match(stderr, /unknown option '--prot'/)
  })
})

/** A TCP port that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

interface LogEntry {
  msg: string
  [field: string]: unknown
}

/** Collects the JSON log lines of a child's stdout; `waitFor` looks at past and future lines. */
class LogWatcher {
  readonly entries: LogEntry[] = []
  readonly raw: string[] = []
  #waiters: Array<{ pattern: RegExp; resolve: (e: LogEntry) => void }> = []

  constructor(child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.raw.push(line)
      let entry: LogEntry
      try {
        entry = JSON.parse(line) as LogEntry
      } catch {
        return
      }
      if (typeof entry.msg !== 'string') return
      this.entries.push(entry)
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pattern.test(entry.msg)) return true
        w.resolve(entry)
        return false
      })
    })
  }

  waitFor(pattern: RegExp, timeoutMs: number): Promise<LogEntry> {
    const seen = this.entries.find((e) => pattern.test(e.msg))
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; stdout so far:\n${this.raw.join('\n')}`)),
        timeoutMs,
      )
      this.#waiters.push({
        pattern,
        resolve: (e) => {
          clearTimeout(timer)
          resolve(e)
        },
      })
    })
  }
}

describe('fbroker start with the native binding', () => {
  test(
    'serves MQTT on the given port and exits 0 on SIGTERM',
    { skip: bindingBuilt ? false : 'packages/binding has no built .node module', timeout: 30_000 },
    async () => {
      const port = await freePort()
      const config = path.join(dir, 'live.yaml')
      writeFileSync(config, 'max_inflight_messages: 7\nmax_queued_messages: 50\nport: 1\n')
      const child = spawn(process.execPath, [cli, 'start', '--config', config, '--port', String(port), '--host', '127.0.0.1'], {
        cwd: dir,
        env: cleanEnv({ FBROKER_LOG_FORMAT: 'json' }),
        stdio: 'pipe',
      })
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      const logs = new LogWatcher(child)
      try {
        const listening = await Promise.race([
          logs.waitFor(/^listening on mqtt:\/\//, 15_000),
          exited.then((code) => assert.fail(`fbroker exited (${code}) before listening:\n${logs.raw.join('\n')}\n${stderr}`)),
        ])
        // The flag's port beats the file's.
        assert.equal(listening.msg, `listening on mqtt://127.0.0.1:${port} (mqtt tcp)`)
        assert.deepEqual([listening.protocol, listening.host, listening.port], ['tcp', '127.0.0.1', port])
        const version = await logs.waitFor(/^fbroker /, 1000)
        assert.ok(version.msg.startsWith(`fbroker ${pkg.version} `), version.msg)
        assert.equal(version.config_file, config)
        const limits = await logs.waitFor(/^limits: /, 1000)
        assert.match(limits.msg, /max_inflight_messages=7 max_queued_messages=50 /)
        assert.match(limits.msg, /open_files=\d+\/\d+ \(soft\/hard\)/)
        assert.equal((limits.limits as { max_inflight_messages: number }).max_inflight_messages, 7)

        const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'cli-test', reconnectPeriod: 0, connectTimeout: 5000 })
        try {
          const received = new Promise<[string, string]>((resolve) => {
            client.on('message', (topic, payload) => resolve([topic, payload.toString()]))
          })
          const granted = await client.subscribeAsync('cli/test', { qos: 1 })
          assert.equal(granted[0]?.qos, 1)
          await client.publishAsync('cli/test', 'hello', { qos: 1 })
          assert.deepEqual(await received, ['cli/test', 'hello'])
        } finally {
          await client.endAsync()
        }

        // SIGHUP with no TLS listener: the auth files are re-read, no TLS reload is attempted.
        child.kill('SIGHUP')
        await logs.waitFor(/^received SIGHUP, auth files reloaded/, 5000)
        assert.ok(!logs.entries.some((e) => /TLS/.test(e.msg)), logs.raw.join('\n'))

        child.kill('SIGTERM')
        assert.equal(await exited, 0, stderr)
        await logs.waitFor(/^received SIGTERM/, 1000)
        await logs.waitFor(/^broker stopped/, 1000)
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      }
    },
  )
})

describe('listener lines and the TLS part of SIGHUP', () => {
  test('each bound listener is logged as a URL a client can use, with its protocol and what is special about it', () => {
    assert.equal(listenerText({ protocol: 'tcp', host: '0.0.0.0', port: 1883 }), 'listening on mqtt://0.0.0.0:1883 (mqtt tcp)')
    assert.equal(
      listenerText({ protocol: 'tls', host: '0.0.0.0', port: 8883, requireCertificate: true, useIdentityAsUsername: true }),
      'listening on mqtts://0.0.0.0:8883 (mqtt tls, client certificate required, certificate CN as user name)',
    )
    assert.equal(listenerText({ protocol: 'ws', host: '::', port: 8080, path: '/mqtt', maxConnections: 50 }), 'listening on ws://[::]:8080/mqtt (mqtt ws, max_connections=50)')
    assert.equal(listenerText({ protocol: 'wss', host: '127.0.0.1', port: 8081, path: '/x', proxyProtocol: true }), 'listening on wss://127.0.0.1:8081/x (mqtt wss, PROXY protocol)')
    assert.equal(listenerUrl({ protocol: 'ws', host: 'localhost', port: 1 }), 'ws://localhost:1')
  })

  /** A logger that keeps [level, message] pairs. */
  function recordingLogger() {
    const lines: Array<[string, string]> = []
    const logger = createLogger({ level: 'info', format: 'json' })
    for (const level of ['info', 'warn', 'error'] as const) {
      ;(logger as unknown as Record<string, unknown>)[level] = (a: unknown, b?: unknown) => {
        lines.push([level, typeof a === 'string' ? a : String(b)])
      }
    }
    return { logger, lines }
  }

  test('SIGHUP logs each listener that kept its old certificate, and how many reloaded', () => {
    const { logger, lines } = recordingLogger()
    const boundListeners = [
      { protocol: 'tcp', host: '0.0.0.0', port: 1883 },
      { protocol: 'tls', host: '0.0.0.0', port: 8883 },
      { protocol: 'wss', host: '0.0.0.0', port: 8884 },
    ]
    let calls = 0
    const broker = {
      boundListeners,
      reloadTls: () => {
        calls++
        return ['listener wss 0.0.0.0:8884: cert_file /etc/fbroker/server.pem is not valid PEM']
      },
    }
    reloadTlsOnSignal(broker, logger)
    assert.equal(calls, 1)
    assert.deepEqual(lines, [
      ['error', 'received SIGHUP, TLS reload failed; the listener keeps its previous certificate: listener wss 0.0.0.0:8884: cert_file /etc/fbroker/server.pem is not valid PEM'],
      ['info', 'received SIGHUP, TLS certificates reloaded: 1 of 2 TLS listeners'],
    ])
  })

  test('SIGHUP without TLS listeners does not reload; a throwing reload is logged, not fatal', () => {
    const { logger, lines } = recordingLogger()
    let calls = 0
    reloadTlsOnSignal({ boundListeners: [{ protocol: 'tcp', host: 'h', port: 1 }], reloadTls: () => (calls++, []) }, logger)
    assert.equal(calls, 0)
    assert.deepEqual(lines, [])
    reloadTlsOnSignal(
      {
        boundListeners: [{ protocol: 'tls', host: 'h', port: 2 }],
        reloadTls: () => {
          throw new Error('broker is closed')
        },
      },
      logger,
    )
    assert.deepEqual(lines, [['error', 'received SIGHUP, TLS reload failed; every TLS listener keeps its previous certificate: broker is closed']])
    lines.length = 0
    reloadTlsOnSignal({ boundListeners: [{ protocol: 'tls', host: 'h', port: 2 }], reloadTls: () => [] }, logger)
    assert.deepEqual(lines, [['info', 'received SIGHUP, TLS certificates reloaded: 1 of 1 TLS listener']])
  })
})
