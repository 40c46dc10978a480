// `fbroker start` as a child process for the listener tests: the built CLI
// (packages/fbroker/dist/cli/main.js) with JSON logs, the bound listeners
// read from the startup banner, log lines watched as they come.
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { cleanEnv, repoRoot } from './auth'

export const cliMain = join(repoRoot, 'packages', 'fbroker', 'dist', 'cli', 'main.js')

export interface LogEntry {
  level: number
  msg: string
  [field: string]: unknown
}

export interface CliListener {
  protocol: 'tcp' | 'tls' | 'ws' | 'wss'
  host: string
  port: number
  /** What a client connects to: mqtt://, mqtts://, ws://…/mqtt, wss://…/mqtt. */
  url: string
}

export interface CliBroker {
  child: ChildProcessWithoutNullStreams
  pid: number
  listeners: CliListener[]
  /** The bound listeners of one protocol, in banner order. */
  of(protocol: CliListener['protocol']): CliListener[]
  entries: LogEntry[]
  stderr(): string
  /** Resolves with the first log entry from index `from` on whose msg matches. */
  waitFor(pattern: RegExp, timeoutMs?: number, from?: number): Promise<LogEntry>
  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  stop(): Promise<number | null>
}

/**
 * Runs `fbroker start ARGS` and resolves once the banner has been logged
 * (the `auth:` line, which follows every `listening on` line). Rejects with
 * stdout and stderr if the process exits first.
 */
export async function startCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliBroker> {
  const child = spawn(process.execPath, [cliMain, 'start', ...args], {
    cwd: opts.cwd ?? repoRoot,
    env: cleanEnv({ FBROKER_LOG_FORMAT: 'json', ...opts.env }),
    stdio: 'pipe',
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const entries: LogEntry[] = []
  const raw: string[] = []
  const waiters = new Set<() => void>()
  createInterface({ input: child.stdout }).on('line', (line) => {
    raw.push(line)
    try {
      entries.push(JSON.parse(line) as LogEntry)
    } catch {
      return
    }
    for (const w of [...waiters]) w()
  })
  const waitFor = (pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<LogEntry> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = entries.slice(from).find((e) => pattern.test(e.msg))
        if (found === undefined) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve(found)
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; stdout:\n${raw.join('\n')}\nstderr:\n${stderr}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  let exitCode: number | null | undefined
  void exited.then((c) => (exitCode = c))
  const stop = async (): Promise<number | null> => {
    if (exitCode !== undefined) return exitCode
    child.kill('SIGTERM')
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    const code = await exited
    clearTimeout(killer)
    return code
  }
  try {
    await Promise.race([
      waitFor(/^auth: /, 20_000),
      exited.then((code) => {
        throw new Error(`fbroker start exited (${code}) before its banner; stdout:\n${raw.join('\n')}\nstderr:\n${stderr}`)
      }),
    ])
  } catch (err) {
    await stop()
    throw err
  }
  const listeners: CliListener[] = entries
    .filter((e) => /^listening on /.test(e.msg))
    .map((e) => ({ protocol: e.protocol as CliListener['protocol'], host: String(e.host), port: Number(e.port), url: String(e.listener) }))
  assert.ok(listeners.length > 0, `no "listening on" line with fields in the banner:\n${raw.join('\n')}`)
  for (const l of listeners) assert.ok(l.port > 0 && ['tcp', 'tls', 'ws', 'wss'].includes(l.protocol), `banner listener fields: ${JSON.stringify(l)}`)
  assert.ok(child.pid !== undefined)
  return {
    child,
    pid: child.pid,
    listeners,
    of: (protocol) => listeners.filter((l) => l.protocol === protocol),
    entries,
    stderr: () => stderr,
    waitFor,
    stop,
  }
}
