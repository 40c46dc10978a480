// Helpers for the authentication and ACL tests: temporary files, the
// `fbroker` CLI, CONNACK probes and a logger that keeps what it logs.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { after } from 'node:test'
import { createLogger, type Logger } from 'fbroker'
import { RawClient, type RawPacket } from './raw'
import { expectPacket } from './expect'

export const repoRoot = resolve(__dirname, '..', '..')
/** The committed bin shim, as `npm` links it. */
export const fbrokerBin = join(repoRoot, 'packages', 'fbroker', 'bin', 'fbroker.js')

/** A fresh directory, removed after the file's tests. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `fbroker-${prefix}-`))
  after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** The test runner's environment without any FBROKER_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FBROKER_')) env[k] = v
  return { ...env, ...extra }
}

/** `fbroker passwd -b [-c] FILE USER PASSWORD` through the real CLI (a `$7$`, 210000-iteration hash); asserts exit 0. */
export function passwdAdd(file: string, user: string, password: string, opts: { create?: boolean } = {}): void {
  const args = [fbrokerBin, 'passwd', '-b', ...(opts.create ? ['-c'] : []), file, user, password]
  const r = spawnSync(process.execPath, args, { env: cleanEnv(), encoding: 'utf8', timeout: 20_000 })
  assert.equal(r.status, 0, `fbroker passwd failed: ${r.stderr}`)
}

/** Moquette's legacy password-file entry: the unsalted SHA-256 of the password, in hex. */
export function sha256Hex(password: string): string {
  return createHash('sha256').update(password).digest('hex')
}

export function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, cmd)))
}

export interface ConnackResult {
  returnCode: number
  sessionPresent: boolean
  /** Whether the broker closed the connection within a second of a refusal (always true for an accepted one). */
  closed: boolean
}

/**
 * Sends CONNECT on a fresh raw connection and reports the CONNACK. A refused
 * connection is watched for the close that must follow; an accepted one is
 * closed by the caller's DISCONNECT-less destroy.
 */
export async function connack(port: number, connect: Partial<RawPacket> = {}, protocolVersion = 4): Promise<ConnackResult> {
  const c = await RawClient.connect(port, { protocolVersion })
  try {
    const ack = await c.handshake(connect, protocolVersion)
    const closed = ack.returnCode === 0 ? true : await c.closesWithin(1000)
    return { returnCode: ack.returnCode, sessionPresent: ack.sessionPresent === true, closed }
  } finally {
    c.destroy()
  }
}

/** Subscribes on a raw connection and returns the SUBACK's return codes. */
export async function subackCodes(c: RawClient, subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>, messageId = 1): Promise<number[]> {
  c.send({ cmd: 'subscribe', messageId, subscriptions })
  const ack = await expectPacket(c, 'suback')
  assert.equal(ack.messageId, messageId)
  return ack.granted as number[]
}

export interface LogLine {
  level: number
  msg: string
  [field: string]: unknown
}

/** A pino logger (JSON, level debug) that keeps every line in `lines`. */
export function captureLogger(level: 'debug' | 'info' = 'debug'): { logger: Logger; lines: LogLine[]; messages(minLevel?: number): string[] } {
  const lines: LogLine[] = []
  const logger = createLogger({
    level,
    format: 'json',
    destination: {
      write(line: string) {
        lines.push(JSON.parse(line) as LogLine)
      },
    },
  })
  return { logger, lines, messages: (minLevel = 0) => lines.filter((l) => l.level >= minLevel).map((l) => l.msg) }
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const
