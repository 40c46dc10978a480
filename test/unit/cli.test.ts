import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { createInterface } from 'node:readline'
import { after, describe, test } from 'node:test'
import { connectAsync } from 'mqtt'

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
    assert.match(stdout, /SIGHUP re-reads the\s+password and ACL files/)
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
        assert.equal(listening.msg, `listening on mqtt://127.0.0.1:${port}`)
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
