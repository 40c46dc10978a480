/**
 * `fbroker passwd [-c] [-b] [-D] FILE USER [PASSWORD]`: manages a password
 * file in Mosquitto's format (`user:$7$<iterations>$<salt>$<hash>`), which
 * both fbroker's password-file source and Mosquitto read.
 */
import { randomBytes } from 'node:crypto'
import { open, readFile, rename, rm } from 'node:fs/promises'
import * as path from 'node:path'
import type { Command } from 'commander'
import { isValidPasswordFileUser } from '../auth/fileSource'
import { DEFAULT_PBKDF2_ITERATIONS, MAX_PBKDF2_ITERATIONS, hashPassword } from '../auth/passwordHash'

/** Options of `fbroker passwd`, as commander hands them over. */
export interface PasswdFlags {
  create?: boolean
  batch?: boolean
  delete?: boolean
  iterations?: string
}

/** Where `runPasswd` reads the password from and writes messages to. */
export interface PasswdIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; isRaw?: boolean; setRawMode?(mode: boolean): unknown }
  stderr: NodeJS.WritableStream
}

/** Exit codes. */
export const PASSWD_OK = 0
export const PASSWD_FAILURE = 1
export const PASSWD_USAGE = 2
/** Interrupted at the password prompt (Ctrl-C): 128 + SIGINT. */
export const PASSWD_INTERRUPTED = 130

/** The least number of PBKDF2 iterations `fbroker passwd` writes. */
export const MIN_PASSWD_ITERATIONS = DEFAULT_PBKDF2_ITERATIONS
/** Longest user name or password MQTT can carry, in bytes. */
const MQTT_STRING_MAX = 65_535

class UsageError extends Error {}
class PromptAborted extends Error {}

/**
 * Reads lines from a terminal in raw mode, without echoing them. Keeps what
 * follows a line ending for the next line, so typed-ahead input is not lost.
 */
class HiddenLineReader {
  readonly #stdin: PasswdIo['stdin']
  readonly #out: NodeJS.WritableStream
  /** Input not yet consumed by a finished line. */
  #buffer = ''
  #wasRaw = false
  /** The pending `read`, waiting for a finished line. */
  #waiting: ((result: { line: string; abort?: string }) => void) | undefined

  constructor(stdin: PasswdIo['stdin'], out: NodeJS.WritableStream) {
    this.#stdin = stdin
    this.#out = out
  }

  /** Parses the buffer with its editing keys: the first finished line (removed from the buffer), or undefined. */
  #take(): { line: string; abort?: string } | undefined {
    let value = ''
    let inEscape = false
    for (let i = 0; i < this.#buffer.length; ) {
      const ch = String.fromCodePoint(this.#buffer.codePointAt(i)!)
      i += ch.length
      if (inEscape) {
        // Skip an escape sequence (arrow keys and the like): ESC [ parameters final-byte.
        if (ch !== '[' && ch >= '@' && ch <= '~') inEscape = false
        continue
      }
      switch (ch) {
        case '\r':
        case '\n':
          this.#buffer = this.#buffer.slice(ch === '\r' && this.#buffer[i] === '\n' ? i + 1 : i)
          return { line: value }
        case '\u0003': // Ctrl-C
          this.#buffer = ''
          return { line: '', abort: 'interrupted' }
        case '\u0004': // Ctrl-D
          if (value === '') {
            this.#buffer = ''
            return { line: '', abort: 'end of input' }
          }
          break
        case '\u007f': // Backspace, Delete
        case '\b':
          value = Array.from(value).slice(0, -1).join('')
          break
        case '\u0015': // Ctrl-U
          value = ''
          break
        case '\u001b':
          inEscape = true
          break
        default:
          if (ch >= ' ') value += ch
      }
    }
    return undefined
  }

  /**
   * Puts the terminal in raw mode (no echo, no line editing, Ctrl-C as a
   * key) before any prompt is shown, so nothing typed early is echoed, and
   * keeps it there until `close()`.
   */
  open(): void {
    const stdin = this.#stdin
    this.#wasRaw = stdin.isRaw === true
    stdin.setRawMode!(true)
    stdin.setEncoding('utf8')
    stdin.on('data', this.#onData)
    stdin.resume()
  }

  /** Restores the terminal mode and stops reading. */
  close(): void {
    const stdin = this.#stdin
    stdin.off('data', this.#onData)
    stdin.setRawMode!(this.#wasRaw)
    stdin.pause()
  }

  readonly #onData = (chunk: string | Buffer) => {
    this.#buffer += typeof chunk === 'string' ? chunk : chunk.toString('utf8')
    if (this.#waiting === undefined) return
    const result = this.#take()
    if (result !== undefined) this.#waiting(result)
  }

  /** Shows `prompt` and resolves to the next line typed (rejects on Ctrl-C, or Ctrl-D on an empty line). */
  read(prompt: string): Promise<string> {
    this.#out.write(prompt)
    return new Promise<string>((resolve, reject) => {
      const finish = (result: { line: string; abort?: string }) => {
        this.#waiting = undefined
        this.#out.write('\n')
        if (result.abort !== undefined) reject(new PromptAborted(result.abort))
        else resolve(result.line)
      }
      const ready = this.#take()
      if (ready !== undefined) finish(ready)
      else this.#waiting = finish
    })
  }
}

async function promptPassword(io: PasswdIo): Promise<string> {
  if (io.stdin.isTTY !== true || typeof io.stdin.setRawMode !== 'function') {
    throw new UsageError(
      'standard input is not a terminal, so the password cannot be read without echo; ' +
        'run it in a terminal, or give the password on the command line with -b (beware of shell history)',
    )
  }
  const reader = new HiddenLineReader(io.stdin, io.stderr)
  reader.open()
  try {
    const first = await reader.read('Password: ')
    const second = await reader.read('Reenter password: ')
    if (first !== second) throw new Error('the passwords do not match')
    return first
  } finally {
    reader.close()
  }
}

/** Writes `content` to `file` atomically (a temporary file in the same directory, then rename), with mode 0600. */
export async function writeFileAtomic(file: string, content: string): Promise<void> {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(tmp, 'wx', 0o600)
  try {
    try {
      await handle.chmod(0o600) // in case the umask took bits away
      await handle.writeFile(content, 'utf8')
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

function lineUser(line: string): string | undefined {
  const trimmed = line.replace(/\r$/, '')
  if (trimmed.trimStart().startsWith('#')) return undefined
  const colon = trimmed.indexOf(':')
  return colon > 0 ? trimmed.slice(0, colon) : undefined
}

/**
 * The new file text: `user`'s entries replaced by `entry` (the first one is
 * replaced in place, later duplicates dropped; appended when absent), or
 * removed when `entry` is undefined. Other lines are kept as they are.
 */
export function updatePasswordFileText(text: string, user: string, entry: string | undefined): { text: string; found: boolean } {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n')
  const out: string[] = []
  let found = false
  for (const line of lines) {
    if (lineUser(line) !== user) {
      out.push(line)
      continue
    }
    if (!found && entry !== undefined) out.push(entry)
    found = true
  }
  if (!found && entry !== undefined) out.push(entry)
  return { text: out.length === 0 ? '' : `${out.join('\n')}\n`, found }
}

function parseIterations(text: string | undefined): number {
  if (text === undefined) return DEFAULT_PBKDF2_ITERATIONS
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--iterations: expected an integer, got ${JSON.stringify(text)}`)
  const n = Number(text.trim())
  if (n < MIN_PASSWD_ITERATIONS || n > MAX_PBKDF2_ITERATIONS) {
    throw new UsageError(`--iterations: expected an integer between ${MIN_PASSWD_ITERATIONS} and ${MAX_PBKDF2_ITERATIONS}, got ${n}`)
  }
  return n
}

function checkUsage(user: string, password: string | undefined, flags: PasswdFlags): void {
  if (flags.create === true && flags.delete === true) throw new UsageError('-c (create) and -D (delete) cannot be combined')
  if (flags.delete === true && (flags.batch === true || password !== undefined)) {
    throw new UsageError('-D (delete) takes no password')
  }
  if (flags.batch === true && password === undefined) throw new UsageError('-b (batch) needs the password after the user name')
  if (flags.batch !== true && password !== undefined) {
    throw new UsageError('a password on the command line needs -b (batch mode); without it the password is prompted for')
  }
  if (!isValidPasswordFileUser(user)) {
    throw new UsageError(`invalid user name ${JSON.stringify(user)}: it must be non-empty, without ":" or control characters`)
  }
  if (Buffer.byteLength(user, 'utf8') > MQTT_STRING_MAX) throw new UsageError(`the user name is longer than ${MQTT_STRING_MAX} bytes`)
}

function fsMessage(err: unknown, file: string): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return `${file}: no such file (use -c to create it)`
  if (code === 'EACCES' || code === 'EPERM') return `${file}: permission denied`
  return `${file}: ${err instanceof Error ? err.message : String(err)}`
}

/**
 * `fbroker passwd`. Resolves to the exit code: 0 on success, 1 on failure
 * (missing file or user, I/O error, passwords that do not match, standard
 * input not a terminal), 2 on a usage error, 130 when interrupted.
 */
export async function runPasswd(
  file: string,
  user: string,
  password: string | undefined,
  flags: PasswdFlags,
  io: PasswdIo = { stdin: process.stdin, stderr: process.stderr },
): Promise<number> {
  const fail = (message: string, code: number) => {
    io.stderr.write(`fbroker passwd: ${message}\n`)
    return code
  }
  const target = path.resolve(file)
  let iterations: number
  try {
    checkUsage(user, password, flags)
    iterations = parseIterations(flags.iterations)
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err), PASSWD_USAGE)
  }

  let existing = ''
  if (flags.create !== true) {
    try {
      existing = await readFile(target, 'utf8')
    } catch (err) {
      return fail(fsMessage(err, target), PASSWD_FAILURE)
    }
  }

  let entry: string | undefined
  if (flags.delete !== true) {
    let plain: string
    try {
      plain = password ?? (await promptPassword(io))
    } catch (err) {
      if (err instanceof PromptAborted) return fail(err.message, PASSWD_INTERRUPTED)
      return fail(err instanceof Error ? err.message : String(err), PASSWD_FAILURE)
    }
    if (plain === '') return fail('the password must not be empty', PASSWD_FAILURE)
    if (Buffer.byteLength(plain, 'utf8') > MQTT_STRING_MAX) return fail(`the password is longer than ${MQTT_STRING_MAX} bytes`, PASSWD_FAILURE)
    entry = `${user}:${await hashPassword(plain, { iterations })}`
  }

  const { text, found } = updatePasswordFileText(existing, user, entry)
  if (flags.delete === true && !found) return fail(`user "${user}" not found in ${target}`, PASSWD_FAILURE)
  try {
    await writeFileAtomic(target, text)
  } catch (err) {
    return fail(fsMessage(err, target), PASSWD_FAILURE)
  }
  return PASSWD_OK
}

/** Adds the `passwd` subcommand to the `fbroker` program. */
export function registerPasswdCommand(program: Command): void {
  program
    .command('passwd')
    .description('add, update or delete a user in a password file (Mosquitto format, PBKDF2-SHA512)')
    .argument('<file>', 'the password file')
    .argument('<user>', 'the user name')
    .argument('[password]', 'the password, with -b only')
    .option('-c, --create', 'create the file, or overwrite it, with only this user')
    .option('-b, --batch', 'take the password from the command line instead of prompting')
    .option('-D, --delete', 'delete the user')
    .option('-I, --iterations <n>', `PBKDF2 iterations (at least ${MIN_PASSWD_ITERATIONS}; default ${DEFAULT_PBKDF2_ITERATIONS})`)
    .addHelpText(
      'after',
      [
        '',
        'Without -b, the password is read twice from the terminal, without echo.',
        'The file is rewritten atomically with mode 0600. Entries are',
        'user:$7$<iterations>$<salt>$<hash>, as mosquitto_passwd writes them.',
        '',
        'Examples:',
        '  fbroker passwd -c /etc/fbroker/passwd alice      # new file, prompts for the password',
        '  fbroker passwd -b /etc/fbroker/passwd bob s3cret # add or update bob',
        '  fbroker passwd -D /etc/fbroker/passwd bob        # delete bob',
      ].join('\n'),
    )
    .action(async (file: string, user: string, password: string | undefined, flags: PasswdFlags) => {
      const code = await runPasswd(file, user, password, flags)
      if (code !== PASSWD_OK) process.exit(code)
    })
}
