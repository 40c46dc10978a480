/**
 * Credential sources held in memory: a Mosquitto-format password file, or a
 * fixed set of users given in code.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import * as path from 'node:path'
import { credentialHooks, toCredentialRecord, type CredentialRecord } from './credentials'
import { isPasswordHash } from './passwordHash'
import type { AclEntry, AuthLogger, Plugin } from './types'

/** A password file that cannot be read or has a malformed line. */
export class PasswordFileError extends Error {
  readonly file?: string
  readonly line?: number

  constructor(message: string, file?: string, line?: number) {
    const where = file === undefined ? '' : line === undefined ? `${file}: ` : `${file}:${line}: `
    super(`${where}${message}`)
    this.name = 'PasswordFileError'
    if (file !== undefined) this.file = file
    if (line !== undefined) this.line = line
  }
}

/** Whether `name` can be stored in a password file: non-empty, no `:`, no control characters. */
export function isValidPasswordFileUser(name: string): boolean {
  return name.length > 0 && !name.includes(':') && !/[\u0000-\u001f\u007f]/.test(name)
}

/**
 * Parses a password file: one `user:hash` per line (`$7$`, `$6$` or
 * SHA-256-hex hashes), blank lines and lines starting with `#` ignored. A
 * user listed twice keeps the last entry. Throws a `PasswordFileError` naming
 * the line of the first malformed entry.
 */
export function parsePasswordFile(text: string, file?: string): Map<string, string> {
  const users = new Map<string, string>()
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '').trimEnd()
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon <= 0) throw new PasswordFileError('expected "user:password-hash"', file, i + 1)
    const user = line.slice(0, colon)
    const hash = line.slice(colon + 1)
    if (!isValidPasswordFileUser(user)) throw new PasswordFileError(`invalid user name ${JSON.stringify(user)}`, file, i + 1)
    if (!isPasswordHash(hash)) {
      throw new PasswordFileError(
        `user "${user}": the password is not a supported hash ($7$ PBKDF2-SHA512, $6$ SHA-512 or SHA-256 hex); ` +
          'a plain-text password? Set it again with `fbroker passwd`',
        file,
        i + 1,
      )
    }
    users.set(user, hash)
  }
  return users
}

/** A user of `createStaticAuthPlugin`: a password hash and an optional ACL (the Redis hash's fields). */
export interface StaticUser {
  /** A password hash (`$7$…`, `$6$…` or SHA-256 hex); see `hashPassword`. Without it, the user cannot log in. */
  password?: string
  /** The user's ACL; without it, the source does not restrict the user's topics. */
  acl?: readonly AclEntry[]
}

export interface StaticAuthPluginOptions {
  /** User name → hash and ACL. */
  users: Readonly<Record<string, StaticUser>> | ReadonlyMap<string, StaticUser>
  /** Default `static-auth`. */
  name?: string
  logger?: AuthLogger
}

export interface StaticAuthPlugin extends Required<Pick<Plugin, 'authenticate' | 'authorizeSubscribe' | 'authorizePublish'>> {
  readonly name: string
  /** Replaces every user at once. */
  setUsers(users: StaticAuthPluginOptions['users']): void
}

function entriesOf<T>(map: Readonly<Record<string, T>> | ReadonlyMap<string, T>): [string, T][] {
  return map instanceof Map ? [...map.entries()] : Object.entries(map as Record<string, T>)
}

/**
 * A credential source over a fixed set of users (see `credentialHooks` for
 * the answers it gives). Hashes and ACLs are validated up front; a bad one is
 * logged and refuses that user's login (hash) or topics (ACL).
 */
export function createStaticAuthPlugin(options: StaticAuthPluginOptions): StaticAuthPlugin {
  const name = options.name ?? 'static-auth'
  let records = new Map<string, CredentialRecord>()
  const setUsers = (users: StaticAuthPluginOptions['users']) => {
    const next = new Map<string, CredentialRecord>()
    for (const [user, entry] of entriesOf(users)) next.set(user, toCredentialRecord(name, user, entry.password, entry.acl, options.logger))
    records = next
  }
  setUsers(options.users)
  return { name, ...credentialHooks((user) => records.get(user)), setUsers }
}

export interface PasswordFilePluginOptions {
  /** The password file (`fbroker passwd` or `mosquitto_passwd` format). Read once, synchronously, at creation. */
  file: string
  /** Optional ACLs by user name, in the same shape as the Redis `acl` field. */
  acl?: Readonly<Record<string, readonly AclEntry[]>>
  /** Default `password-file`. */
  name?: string
  logger?: AuthLogger
}

export interface PasswordFilePlugin extends StaticAuthPlugin {
  /** The absolute path of the file. */
  readonly file: string
  /** Re-reads the file; on error (unreadable, malformed) keeps the users it had and rejects. */
  reload(): Promise<void>
}

function usersFromFile(hashes: Map<string, string>, acl: PasswordFilePluginOptions['acl']): Map<string, StaticUser> {
  const users = new Map<string, StaticUser>()
  for (const [user, password] of hashes) {
    const entry: StaticUser = { password }
    const userAcl = acl?.[user]
    if (userAcl !== undefined) entry.acl = userAcl
    users.set(user, entry)
  }
  return users
}

function readError(file: string, err: unknown): PasswordFileError {
  if (err instanceof PasswordFileError) return err
  const code = (err as NodeJS.ErrnoException).code
  const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : err instanceof Error ? err.message : String(err)
  return new PasswordFileError(`cannot read the password file: ${why}`, file)
}

/**
 * A credential source backed by a Mosquitto-format password file. Throws a
 * `PasswordFileError` (naming the file and line) if it cannot be read or
 * parsed. Users listed in `acl` but not in the file cannot log in, but their
 * ACL still applies when another plugin authenticates them.
 */
export function createPasswordFilePlugin(options: PasswordFilePluginOptions): PasswordFilePlugin {
  const file = path.resolve(options.file)
  let hashes: Map<string, string>
  try {
    hashes = parsePasswordFile(readFileSync(file, 'utf8'), file)
  } catch (err) {
    throw readError(file, err)
  }
  const aclOnly = () => {
    const users = usersFromFile(hashes, options.acl)
    for (const [user, acl] of Object.entries(options.acl ?? {})) if (!users.has(user)) users.set(user, { acl })
    return users
  }
  const inner = createStaticAuthPlugin({ users: aclOnly(), name: options.name ?? 'password-file', logger: options.logger })
  return {
    ...inner,
    file,
    async reload() {
      try {
        hashes = parsePasswordFile(await readFile(file, 'utf8'), file)
      } catch (err) {
        throw readError(file, err)
      }
      inner.setUsers(aclOnly())
    },
  }
}
