/**
 * Password hashes in Mosquitto's password-file format.
 *
 * - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512, 64-byte hash,
 *   salt and hash in standard base64 with padding. What `fbroker passwd` and
 *   `mosquitto_passwd` (2.0 and later) write.
 * - `$6$<salt>$<hash>`: SHA-512 of the password followed by the salt, as
 *   Mosquitto 1.6 and earlier wrote (verify only).
 * - 64 hexadecimal digits: an unsalted SHA-256 of the password (verify only;
 *   legacy).
 *
 * PBKDF2 runs with the asynchronous `crypto.pbkdf2`, on libuv's thread pool,
 * never on the event loop.
 */
import { createHash, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const pbkdf2Async = promisify(pbkdf2)

/** Iterations `hashPassword` uses by default (OWASP's recommendation for PBKDF2-HMAC-SHA512). */
export const DEFAULT_PBKDF2_ITERATIONS = 210_000
/** Most iterations a stored hash may ask for; above this a hash is rejected, so a bad record cannot tie up a thread for minutes. */
export const MAX_PBKDF2_ITERATIONS = 10_000_000
/** Salt length `hashPassword` generates, in bytes (as Mosquitto). */
export const SALT_BYTES = 12
/** PBKDF2-SHA512 output length, in bytes. */
export const HASH_BYTES = 64

/** A parsed password hash. */
export type ParsedPasswordHash =
  | { readonly kind: 'pbkdf2-sha512'; readonly iterations: number; readonly salt: Buffer; readonly hash: Buffer }
  | { readonly kind: 'sha512'; readonly salt: Buffer; readonly hash: Buffer }
  | { readonly kind: 'sha256-hex'; readonly hash: Buffer }

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

function decodeBase64(text: string): Buffer | undefined {
  if (!BASE64.test(text) || text.length % 4 !== 0) return undefined
  const bytes = Buffer.from(text, 'base64')
  return bytes.length === 0 ? undefined : bytes
}

/**
 * Parses a stored hash. Returns undefined for a string in none of the
 * supported formats (or with an iteration count out of range).
 */
export function parsePasswordHash(stored: string): ParsedPasswordHash | undefined {
  if (typeof stored !== 'string') return undefined
  if (stored.startsWith('$7$')) {
    const parts = stored.split('$')
    if (parts.length !== 5) return undefined
    const [, , iterText, saltText, hashText] = parts as [string, string, string, string, string]
    if (!/^[1-9]\d{0,9}$/.test(iterText)) return undefined
    const iterations = Number(iterText)
    if (iterations > MAX_PBKDF2_ITERATIONS) return undefined
    const salt = decodeBase64(saltText)
    const hash = decodeBase64(hashText)
    if (salt === undefined || hash === undefined || hash.length !== HASH_BYTES) return undefined
    return { kind: 'pbkdf2-sha512', iterations, salt, hash }
  }
  if (stored.startsWith('$6$')) {
    const parts = stored.split('$')
    if (parts.length !== 4) return undefined
    const salt = decodeBase64(parts[2]!)
    const hash = decodeBase64(parts[3]!)
    if (salt === undefined || hash === undefined || hash.length !== 64) return undefined
    return { kind: 'sha512', salt, hash }
  }
  if (/^[0-9a-fA-F]{64}$/.test(stored)) return { kind: 'sha256-hex', hash: Buffer.from(stored, 'hex') }
  return undefined
}

/** Whether `stored` is a hash `verifyPassword` understands. */
export function isPasswordHash(stored: string): boolean {
  return parsePasswordHash(stored) !== undefined
}

function toBytes(password: string | Buffer): Buffer {
  return typeof password === 'string' ? Buffer.from(password, 'utf8') : password
}

export interface HashPasswordOptions {
  /** PBKDF2 iterations. Default 210000. */
  iterations?: number
  /** The salt; default 12 random bytes. For tests and reproducible vectors only. */
  salt?: Buffer
}

/** Hashes a password in the `$7$` format (PBKDF2-HMAC-SHA512). */
export async function hashPassword(password: string | Buffer, options: HashPasswordOptions = {}): Promise<string> {
  const iterations = options.iterations ?? DEFAULT_PBKDF2_ITERATIONS
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) {
    throw new RangeError(`iterations must be an integer between 1 and ${MAX_PBKDF2_ITERATIONS}, got ${String(iterations)}`)
  }
  const salt = options.salt ?? randomBytes(SALT_BYTES)
  if (salt.length === 0) throw new RangeError('salt must not be empty')
  const hash = await pbkdf2Async(toBytes(password), salt, iterations, HASH_BYTES, 'sha512')
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`
}

/**
 * Checks a password against a stored hash, in constant time for hashes of the
 * same format. Resolves to false for a hash in no supported format.
 */
export async function verifyPassword(password: string | Buffer, stored: string | ParsedPasswordHash): Promise<boolean> {
  const parsed = typeof stored === 'string' ? parsePasswordHash(stored) : stored
  if (parsed === undefined) return false
  const bytes = toBytes(password)
  let computed: Buffer
  switch (parsed.kind) {
    case 'pbkdf2-sha512':
      computed = await pbkdf2Async(bytes, parsed.salt, parsed.iterations, parsed.hash.length, 'sha512')
      break
    case 'sha512':
      computed = createHash('sha512').update(bytes).update(parsed.salt).digest()
      break
    case 'sha256-hex':
      computed = createHash('sha256').update(bytes).digest()
      break
  }
  return computed.length === parsed.hash.length && timingSafeEqual(computed, parsed.hash)
}
