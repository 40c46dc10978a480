/**
 * The plugin chain: asks each plugin's hook in order until one gives a
 * definite answer, with a timeout per call, errors turned into denials, and a
 * TTL cache for the per-message `authorizePublish` hook.
 */
import { performance } from 'node:perf_hooks'
import { ConnackCode, SUBACK_FAILURE, isValidConnackCode, refusalCode } from './codes'
import { registeredHooks } from './plugins'
import type {
  AuthDecision,
  AuthLogger,
  ClientInfo,
  DecisionCause,
  HookName,
  MaybePromise,
  Plugin,
  PublishAuthorizationItem,
  RegisteredHooks,
  SubscriptionRequest,
} from './types'

export interface PluginChainOptions {
  /** Where hook errors, timeouts and invalid answers are logged. Default: nowhere. */
  logger?: AuthLogger
  /** Milliseconds one hook call may take before it counts as a denial. Default 5000. */
  hookTimeoutMs?: number
  /**
   * Milliseconds an `authorizePublish` decision is reused for the same client
   * (id and user name) and topic, whatever the payload, QoS and retain flag.
   * 0 (the default) disables the cache.
   */
  publishCacheTtlMs?: number
  /** Most cached `authorizePublish` decisions; the oldest is evicted beyond it. Default 100000. */
  publishCacheMaxEntries?: number
}

export const DEFAULT_HOOK_TIMEOUT_MS = 5000

/**
 * CONNACK return code of a login refused because a hook failed (threw,
 * rejected, timed out or answered nonsense): 5 "not authorized". The native
 * core refuses with the same code when no decision reaches it in time, so a
 * client sees one code for every failure, whichever side noticed it.
 */
export const HOOK_FAILURE_CODE: number = ConnackCode.NOT_AUTHORIZED
export const DEFAULT_PUBLISH_CACHE_TTL_MS = 0
export const DEFAULT_PUBLISH_CACHE_MAX_ENTRIES = 100_000

const NOOP_LOGGER: AuthLogger = { debug() {}, info() {}, warn() {}, error() {} }

type Settled<T> = { kind: 'value'; value: T } | { kind: 'error'; error: unknown } | { kind: 'timeout' }

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function'
}

/**
 * Calls a hook. A synchronous result or throw settles at once; a promise is
 * raced against the timeout. A promise that settles after its timeout is
 * ignored (its rejection is handled, so it is not an unhandled rejection).
 */
function invoke<T>(call: () => MaybePromise<T>, timeoutMs: number): Settled<T> | Promise<Settled<T>> {
  let result: MaybePromise<T>
  try {
    result = call()
  } catch (error) {
    return { kind: 'error', error }
  }
  if (!isThenable(result)) return { kind: 'value', value: result as T }
  return new Promise<Settled<T>>((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs)
    Promise.resolve(result).then(
      (value) => {
        clearTimeout(timer)
        resolve({ kind: 'value', value })
      },
      (error: unknown) => {
        clearTimeout(timer)
        resolve({ kind: 'error', error })
      },
    )
  })
}

function checkNonNegative(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${String(value)}`)
  }
  return value
}

function showAnswer(value: unknown): string {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' ? JSON.stringify(value) ?? String(value) : String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

interface PublishFailure {
  plugin: string
  cause: Exclude<DecisionCause, 'answer' | 'no-answer'>
  clientId: string
  topic: string
  error?: unknown
  answer?: unknown
}

interface PublishOutcome {
  allow: boolean
  /** False for errors, timeouts and invalid answers: those are not cached. */
  cacheable: boolean
}

interface CacheEntry {
  allow: boolean
  expires: number
  clientId: string
}

interface PendingEvaluation {
  promise: Promise<boolean>
  clientId: string
  /** Set by forgetClient/clearCache while the evaluation runs: its result is then not cached. */
  stale: boolean
}

/**
 * Runs the hooks of several plugins as one. For each question, plugins are
 * asked in order; the first definite answer wins. A plugin without the hook,
 * or whose hook returns `undefined` or `null`, passes to the next. When no
 * plugin answers, `authenticate` reports `outcome: 'none'` (the broker then
 * applies its built-in sources and `allow_anonymous`) and the authorize hooks
 * allow.
 *
 * Every hook call has a timeout. A hook that throws, rejects, times out or
 * answers with a value of the wrong type denies (fail closed) and is logged;
 * nothing it does can throw out of the chain.
 */
export class PluginChain {
  readonly #plugins: readonly Plugin[]
  readonly #authenticators: readonly Plugin[]
  readonly #subscribeAuthorizers: readonly Plugin[]
  readonly #publishAuthorizers: readonly Plugin[]
  readonly #logger: AuthLogger
  readonly #timeoutMs: number
  readonly #cacheTtlMs: number
  readonly #cacheMax: number
  /** Insertion-ordered: the first key is the oldest. */
  readonly #cache = new Map<string, CacheEntry>()
  /** Client id → its keys in #cache, so that forgetClient is cheap. */
  readonly #cacheByClient = new Map<string, Set<string>>()
  readonly #pending = new Map<string, PendingEvaluation>()
  #closed: Promise<void> | undefined

  constructor(plugins: readonly Plugin[], options: PluginChainOptions = {}) {
    this.#plugins = [...plugins]
    this.#authenticators = this.#plugins.filter((p) => typeof p.authenticate === 'function')
    this.#subscribeAuthorizers = this.#plugins.filter((p) => typeof p.authorizeSubscribe === 'function')
    this.#publishAuthorizers = this.#plugins.filter((p) => typeof p.authorizePublish === 'function')
    this.#logger = options.logger ?? NOOP_LOGGER
    this.#timeoutMs = checkNonNegative('hookTimeoutMs', options.hookTimeoutMs, DEFAULT_HOOK_TIMEOUT_MS, 1)
    this.#cacheTtlMs = checkNonNegative('publishCacheTtlMs', options.publishCacheTtlMs, DEFAULT_PUBLISH_CACHE_TTL_MS)
    this.#cacheMax = checkNonNegative('publishCacheMaxEntries', options.publishCacheMaxEntries, DEFAULT_PUBLISH_CACHE_MAX_ENTRIES, 1)
  }

  /** The plugins, in chain order. */
  get plugins(): readonly Plugin[] {
    return this.#plugins
  }

  /** Which hooks at least one plugin registers (see `registeredHooks`). */
  get hooks(): RegisteredHooks {
    return registeredHooks(this.#plugins)
  }

  /** Number of cached `authorizePublish` decisions (expired ones included until they are looked up or evicted). */
  get publishCacheSize(): number {
    return this.#cache.size
  }

  // -------------------------------------------------------------------------
  // authenticate

  /**
   * Asks the plugins whether `client` may connect. Never rejects.
   * - a plugin's `true` → `allow`, return code 0;
   * - `false` → `deny` with 4 when a user name or password was given, else 5;
   * - a number → that return code (0 allows);
   * - an error, timeout or invalid answer → `deny` with 5 "not authorized"
   *   (`HOOK_FAILURE_CODE`), the code the native core also refuses with
   *   when no decision reaches it within the hook timeout;
   * - no answer from any plugin → `none`.
   */
  async authenticate(client: ClientInfo, username: string | undefined, password: Buffer | undefined): Promise<AuthDecision> {
    for (const plugin of this.#authenticators) {
      const settled = await invoke(() => plugin.authenticate!(client, username, password), this.#timeoutMs)
      if (settled.kind !== 'value') {
        this.#logFailure('authenticate', plugin, settled, { clientId: client.id, username })
        return { outcome: 'deny', returnCode: HOOK_FAILURE_CODE, cause: settled.kind, plugin: plugin.name }
      }
      const answer = settled.value
      if (answer === undefined || answer === null) continue
      if (answer === true) return { outcome: 'allow', returnCode: ConnackCode.ACCEPTED, cause: 'answer', plugin: plugin.name }
      if (answer === false) {
        return { outcome: 'deny', returnCode: refusalCode(username, password), cause: 'answer', plugin: plugin.name }
      }
      if (typeof answer === 'number' && isValidConnackCode(answer)) {
        return { outcome: answer === 0 ? 'allow' : 'deny', returnCode: answer, cause: 'answer', plugin: plugin.name }
      }
      this.#logInvalid('authenticate', plugin, answer, 'true, false, a return code 0–5 or 0x80–0xFF, or undefined', { clientId: client.id, username })
      return { outcome: 'deny', returnCode: HOOK_FAILURE_CODE, cause: 'invalid', plugin: plugin.name }
    }
    return { outcome: 'none', returnCode: ConnackCode.ACCEPTED, cause: 'no-answer' }
  }

  // -------------------------------------------------------------------------
  // authorizeSubscribe

  /**
   * Asks the plugins about every filter of one SUBSCRIBE (filters are
   * decided concurrently, plugins in order for each). Returns, per filter,
   * the granted QoS (never above the requested one) or 0x80. Never rejects.
   */
  async authorizeSubscribe(client: ClientInfo, subscriptions: readonly SubscriptionRequest[]): Promise<number[]> {
    if (this.#subscribeAuthorizers.length === 0) return subscriptions.map((s) => clampQos(s.qos))
    return Promise.all(subscriptions.map((s) => this.#authorizeOneSubscription(client, s)))
  }

  async #authorizeOneSubscription(client: ClientInfo, subscription: SubscriptionRequest): Promise<number> {
    const requested = clampQos(subscription.qos)
    const request: SubscriptionRequest = { topic: subscription.topic, qos: requested }
    for (const plugin of this.#subscribeAuthorizers) {
      const settled = await invoke(() => plugin.authorizeSubscribe!(client, request), this.#timeoutMs)
      if (settled.kind !== 'value') {
        this.#logFailure('authorizeSubscribe', plugin, settled, { clientId: client.id, topic: subscription.topic })
        return SUBACK_FAILURE
      }
      const answer = settled.value
      if (answer === undefined || answer === null) continue
      if (answer === false) return SUBACK_FAILURE
      if (answer === true) return requested
      if (typeof answer === 'number' && Number.isInteger(answer)) {
        if (answer >= 0 && answer <= 2) return Math.min(requested, answer)
        if (answer >= 0x80 && answer <= 0xff) return SUBACK_FAILURE
      }
      this.#logInvalid('authorizeSubscribe', plugin, answer, 'a QoS 0–2, true, false, or undefined', {
        clientId: client.id,
        topic: subscription.topic,
      })
      return SUBACK_FAILURE
    }
    return requested
  }

  // -------------------------------------------------------------------------
  // authorizePublish

  /**
   * Decides a batch of PUBLISH packets at once: `true` lets a message
   * through. Items are decided concurrently; for each, plugins are asked in
   * order. With a cache TTL, a decision is reused for the same client and
   * topic until it expires, and identical questions in flight share one
   * evaluation. Errors, timeouts and invalid answers deny, are not cached,
   * and are logged once per batch and plugin. Never rejects.
   */
  async authorizePublishBatch(items: readonly PublishAuthorizationItem[]): Promise<boolean[]> {
    if (this.#publishAuthorizers.length === 0) return items.map(() => true)
    const failures: PublishFailure[] = []
    const results = await Promise.all(items.map((item) => this.#authorizeOnePublish(item, failures)))
    if (failures.length > 0) this.#logPublishFailures(failures)
    return results
  }

  /** One PUBLISH: a batch of one. */
  async authorizePublish(item: PublishAuthorizationItem): Promise<boolean> {
    const [allowed] = await this.authorizePublishBatch([item])
    return allowed!
  }

  #authorizeOnePublish(item: PublishAuthorizationItem, failures: PublishFailure[]): boolean | Promise<boolean> {
    if (this.#cacheTtlMs === 0) return this.#evaluatePublish(item, failures).then((o) => o.allow)

    const clientId = item.client.id
    const key = `${clientId}\u0000${item.client.username ?? '\u0001'}\u0000${item.topic}`
    const cached = this.#cache.get(key)
    if (cached !== undefined) {
      if (cached.expires > performance.now()) return cached.allow
      this.#deleteCached(key, cached)
    }
    const inFlight = this.#pending.get(key)
    if (inFlight !== undefined) return inFlight.promise

    const pending: PendingEvaluation = { promise: undefined as unknown as Promise<boolean>, clientId, stale: false }
    pending.promise = this.#evaluatePublish(item, failures).then((outcome) => {
      if (this.#pending.get(key) === pending) this.#pending.delete(key)
      if (outcome.cacheable && !pending.stale) this.#setCached(key, clientId, outcome.allow)
      return outcome.allow
    })
    this.#pending.set(key, pending)
    return pending.promise
  }

  async #evaluatePublish(item: PublishAuthorizationItem, failures: PublishFailure[]): Promise<PublishOutcome> {
    const client = item.client
    const packet = { topic: item.topic, payload: item.payload, qos: item.qos, retain: item.retain }
    for (const plugin of this.#publishAuthorizers) {
      const settled = await invoke(() => plugin.authorizePublish!(client, packet), this.#timeoutMs)
      if (settled.kind !== 'value') {
        const failure: PublishFailure = { plugin: plugin.name, cause: settled.kind, clientId: client.id, topic: item.topic }
        if (settled.kind === 'error') failure.error = settled.error
        failures.push(failure)
        return { allow: false, cacheable: false }
      }
      const answer = settled.value
      if (answer === undefined || answer === null) continue
      if (answer === true || answer === false) return { allow: answer, cacheable: true }
      failures.push({ plugin: plugin.name, cause: 'invalid', clientId: client.id, topic: item.topic, answer })
      return { allow: false, cacheable: false }
    }
    return { allow: true, cacheable: true }
  }

  #setCached(key: string, clientId: string, allow: boolean): void {
    const existing = this.#cache.get(key)
    if (existing !== undefined) this.#cache.delete(key) // re-inserted below as the newest
    else if (this.#cache.size >= this.#cacheMax) {
      const oldest = this.#cache.keys().next()
      if (!oldest.done) this.#deleteCached(oldest.value, this.#cache.get(oldest.value)!)
    }
    this.#cache.set(key, { allow, expires: performance.now() + this.#cacheTtlMs, clientId })
    let keys = this.#cacheByClient.get(clientId)
    if (keys === undefined) this.#cacheByClient.set(clientId, (keys = new Set()))
    keys.add(key)
  }

  #deleteCached(key: string, entry: CacheEntry): void {
    this.#cache.delete(key)
    const keys = this.#cacheByClient.get(entry.clientId)
    if (keys !== undefined) {
      keys.delete(key)
      if (keys.size === 0) this.#cacheByClient.delete(entry.clientId)
    }
  }

  /**
   * Drops the cached `authorizePublish` decisions of a client (call it when
   * the client disconnects, or when its permissions change).
   */
  forgetClient(clientId: string): void {
    const keys = this.#cacheByClient.get(clientId)
    if (keys !== undefined) {
      for (const key of keys) this.#cache.delete(key)
      this.#cacheByClient.delete(clientId)
    }
    for (const [key, pending] of this.#pending) {
      if (pending.clientId === clientId) {
        pending.stale = true
        this.#pending.delete(key)
      }
    }
  }

  /** Drops every cached `authorizePublish` decision. */
  clearCache(): void {
    this.#cache.clear()
    this.#cacheByClient.clear()
    for (const pending of this.#pending.values()) pending.stale = true
    this.#pending.clear()
  }

  /**
   * Calls every plugin's `close()` (last plugin first), waiting for each.
   * Errors are logged, not thrown. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.clearCache()
      for (const plugin of [...this.#plugins].reverse()) {
        if (typeof plugin.close !== 'function') continue
        const settled = await invoke(() => plugin.close!(), this.#timeoutMs)
        if (settled.kind !== 'value') this.#logFailure('close', plugin, settled, {})
      }
    })()
    return this.#closed
  }

  // -------------------------------------------------------------------------
  // logging

  #logFailure(hook: HookName | 'close', plugin: Plugin, settled: Settled<unknown>, fields: Record<string, unknown>): void {
    const base = { plugin: plugin.name, hook, ...defined(fields) }
    if (settled.kind === 'timeout') {
      this.#logger.error({ ...base, timeoutMs: this.#timeoutMs }, `plugin "${plugin.name}": ${hook} did not answer within ${this.#timeoutMs} ms; denied`)
    } else if (settled.kind === 'error') {
      this.#logger.error({ ...base, err: settled.error }, `plugin "${plugin.name}": ${hook} failed: ${errorMessage(settled.error)}; denied`)
    }
  }

  #logInvalid(hook: HookName, plugin: Plugin, answer: unknown, expected: string, fields: Record<string, unknown>): void {
    this.#logger.error(
      { plugin: plugin.name, hook, answer: showAnswer(answer), ...defined(fields) },
      `plugin "${plugin.name}": ${hook} returned ${showAnswer(answer)}, expected ${expected}; denied`,
    )
  }

  #logPublishFailures(failures: readonly PublishFailure[]): void {
    const groups = new Map<string, PublishFailure[]>()
    for (const f of failures) {
      const key = `${f.plugin}\u0000${f.cause}`
      let group = groups.get(key)
      if (group === undefined) groups.set(key, (group = []))
      group.push(f)
    }
    for (const group of groups.values()) {
      const first = group[0]!
      const what =
        first.cause === 'timeout'
          ? `did not answer within ${this.#timeoutMs} ms`
          : first.cause === 'error'
            ? `failed: ${errorMessage(first.error)}`
            : `returned ${showAnswer(first.answer)}, expected true, false or undefined`
      const count = group.length === 1 ? '' : ` (${group.length} messages in this batch; first shown)`
      const fields: Record<string, unknown> = {
        plugin: first.plugin,
        hook: 'authorizePublish',
        cause: first.cause,
        count: group.length,
        clientId: first.clientId,
        topic: first.topic,
      }
      if (first.cause === 'error') fields.err = first.error
      this.#logger.error(fields, `plugin "${first.plugin}": authorizePublish ${what}; denied${count}`)
    }
  }
}

function clampQos(qos: number): number {
  return qos === 1 || qos === 2 ? qos : 0
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function defined(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v
  return out
}
