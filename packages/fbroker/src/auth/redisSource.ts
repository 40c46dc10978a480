/**
 * The built-in Redis credential source.
 *
 * Each user is a Redis hash at `<prefix><user name>` (default prefix
 * `fbroker:auth:user:`) with the fields:
 * - `password`: a password hash, normally `$7$…` (PBKDF2-SHA512, as written
 *   by `fbroker passwd` and `mosquitto_passwd`);
 * - `acl` (optional): a JSON array of `{ "access": "read" | "write" |
 *   "readwrite" | "deny", "topic": "<filter>" }`.
 *
 * Records (including "no such user") are cached in process for `cacheTtlMs`.
 * When Redis cannot be reached, lookups fail, so the chain denies (fail
 * closed) and logs; ioredis keeps reconnecting in the background.
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis'
import { credentialHooks, toCredentialRecord, type CredentialRecord } from './credentials'
import type { AuthLogger, Plugin } from './types'

export const DEFAULT_REDIS_AUTH_PREFIX = 'fbroker:auth:user:'
export const DEFAULT_REDIS_AUTH_CACHE_TTL_MS = 5000
export const DEFAULT_REDIS_AUTH_CACHE_MAX_ENTRIES = 10_000
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 2000

export interface RedisAuthPluginOptions {
  /** `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for TLS). */
  url?: string
  /** Used when `url` is not given. Default `127.0.0.1`. */
  host?: string
  /** Used when `url` is not given. Default 6379. */
  port?: number
  /** Redis AUTH password, when not in the URL. */
  password?: string
  /** Redis database number, when not in the URL. */
  db?: number
  /** Key prefix; the user name follows it. Default `fbroker:auth:user:`. */
  prefix?: string
  /** Milliseconds a looked-up user (or the absence of one) is reused before Redis is asked again. 0 disables the cache. Default 5000. */
  cacheTtlMs?: number
  /** Most users cached; the oldest is evicted beyond it. Default 10000. */
  cacheMaxEntries?: number
  /** Milliseconds a Redis command (and the connection attempt) may take before the lookup fails. Default 2000. */
  commandTimeoutMs?: number
  /** An existing ioredis client to use instead of creating one. `close()` does not close it. */
  redis?: RedisClient
  /** Default `redis-auth`. */
  name?: string
  logger?: AuthLogger
}

export interface RedisAuthPlugin extends Required<Pick<Plugin, 'authenticate' | 'authorizeSubscribe' | 'authorizePublish'>> {
  readonly name: string
  /** The ioredis client. */
  readonly redis: RedisClient
  /** Forgets the cached record of one user, or of every user. */
  invalidate(username?: string): void
  /** Closes the Redis connection (unless it was passed in) and empties the cache. Idempotent. */
  close(): Promise<void>
}

interface CacheEntry {
  record: CredentialRecord | undefined
  expires: number
}

function checkCount(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${String(value)}`)
  }
  return value
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * Creates the Redis credential source. It connects at once and reconnects
 * forever (with a back-off of up to 2 s); close it with `close()`.
 */
export function createRedisAuthPlugin(options: RedisAuthPluginOptions = {}): RedisAuthPlugin {
  const name = options.name ?? 'redis-auth'
  const prefix = options.prefix ?? DEFAULT_REDIS_AUTH_PREFIX
  const ttl = checkCount('cacheTtlMs', options.cacheTtlMs, DEFAULT_REDIS_AUTH_CACHE_TTL_MS, 0)
  const cacheMax = checkCount('cacheMaxEntries', options.cacheMaxEntries, DEFAULT_REDIS_AUTH_CACHE_MAX_ENTRIES, 1)
  const commandTimeout = checkCount('commandTimeoutMs', options.commandTimeoutMs, DEFAULT_REDIS_COMMAND_TIMEOUT_MS, 1)
  const logger = options.logger

  const owned = options.redis === undefined
  let redis: RedisClient
  if (options.redis !== undefined) {
    redis = options.redis
  } else {
    // Loaded lazily: brokers without the Redis source never load ioredis.
    const { Redis } = require('ioredis') as typeof import('ioredis')
    const redisOptions: RedisOptions = {
      commandTimeout,
      connectTimeout: commandTimeout,
      // Commands wait (up to commandTimeout) for a connection being (re)established, then fail.
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 200, 2000),
      lazyConnect: false,
    }
    if (options.password !== undefined) redisOptions.password = options.password
    if (options.db !== undefined) redisOptions.db = options.db
    if (options.url !== undefined) {
      redis = new Redis(options.url, redisOptions)
    } else {
      redis = new Redis({ ...redisOptions, host: options.host ?? '127.0.0.1', port: options.port ?? 6379 })
    }
  }

  // Connection state is logged on transitions only, not on every reconnect attempt.
  let unavailable = false
  const onError = (err: Error) => {
    if (unavailable) return
    unavailable = true
    logger?.error(
      { plugin: name, err },
      `${name}: Redis unavailable (${err.message}); logins and ACL checks that need Redis are refused until it is back`,
    )
  }
  const onReady = () => {
    if (!unavailable) return
    unavailable = false
    logger?.info({ plugin: name }, `${name}: Redis available again`)
  }
  redis.on('error', onError)
  redis.on('ready', onReady)

  const cache = new Map<string, CacheEntry>()
  const inFlight = new Map<string, Promise<CredentialRecord | undefined>>()
  let generation = 0
  let closed: Promise<void> | undefined

  const fetch = async (username: string): Promise<CredentialRecord | undefined> => {
    let fields: (string | null)[]
    try {
      fields = await redis.hmget(prefix + username, 'password', 'acl')
    } catch (err) {
      throw new Error(`${name}: Redis lookup of user "${username}" failed: ${errorMessage(err)}`, { cause: err })
    }
    const [password, acl] = fields
    if ((password === null || password === undefined) && (acl === null || acl === undefined)) return undefined
    return toCredentialRecord(name, username, password, acl, logger)
  }

  const lookup = (username: string): CredentialRecord | undefined | Promise<CredentialRecord | undefined> => {
    if (closed !== undefined) return Promise.reject(new Error(`${name}: closed`))
    const hit = cache.get(username)
    if (hit !== undefined) {
      if (hit.expires > performance.now()) return hit.record
      cache.delete(username)
    }
    const running = inFlight.get(username)
    if (running !== undefined) return running
    const startedAt = generation
    const promise = fetch(username).then(
      (record) => {
        inFlight.delete(username)
        if (ttl > 0 && startedAt === generation) {
          if (cache.size >= cacheMax) {
            const oldest = cache.keys().next()
            if (!oldest.done) cache.delete(oldest.value)
          }
          cache.set(username, { record, expires: performance.now() + ttl })
        }
        return record
      },
      (err: unknown) => {
        inFlight.delete(username)
        throw err
      },
    )
    inFlight.set(username, promise)
    return promise
  }

  return {
    name,
    redis,
    ...credentialHooks(lookup),
    invalidate(username?: string) {
      generation++
      if (username === undefined) cache.clear()
      else cache.delete(username)
    },
    close() {
      closed ??= (async () => {
        cache.clear()
        generation++
        if (!owned) {
          redis.off('error', onError)
          redis.off('ready', onReady)
          return
        }
        redis.off('ready', onReady)
        if (redis.status === 'end') return
        const ended = new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            redis.disconnect()
            resolve()
          }, commandTimeout)
          redis.once('end', () => {
            clearTimeout(timer)
            resolve()
          })
        })
        if (redis.status === 'ready') redis.quit().catch(() => redis.disconnect())
        else redis.disconnect()
        await ended
        // Keep the error listener: a late socket error must not become an unhandled 'error' event.
      })()
      return closed
    },
  }
}
