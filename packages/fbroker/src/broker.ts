import { EventEmitter } from 'node:events'
import { PluginChain } from './auth/chain'
import { SUBACK_FAILURE, connackCodeFor, ConnackCode } from './auth/codes'
import { isLegacyHashWarning, loadAuthFiles, type LoadedAuthFiles } from './auth/files'
import { loadPlugins, type PluginSpec } from './auth/plugins'
import { createRedisAuthPlugin, type RedisAuthPlugin } from './auth/redisSource'
import { HOOK_NAMES, type ClientInfo, type HookName, type PublishAuthorizationItem, type RegisteredHooks } from './auth/types'
import { ConfigError } from './config/errors'
import { resolveListeners, usesTls, type ResolvedListener } from './config/listeners'
import { resolveBrokerSettings } from './config/load'
import { camelCaseKey, LOG_LEVELS, redactUrl, showValue, type BrokerSettings, type LogLevel } from './config/schema'
import { createLogger, silentLogger, type Logger } from './log'
import { PersistenceController, type PersistenceHealthEvent } from './persistence/controller'
import { RedisPersistence, type RedisPersistenceOptions } from './persistence/redis'
import { redisTargetOptions, redisTargetProblem } from './persistence/redisTarget'
import type { PersistenceBackend } from './persistence/types'
import type { NativePersistence } from './persistence/bridge'
import {
  loadNativeBinding,
  raiseOpenFileLimit,
  startNativeBroker,
  toNativeListener,
  type NativeBinding,
  type NativeBoundListener,
  type NativeBroker,
  type NativeBrokerConfig,
  type NativeDisconnectReason,
  type NativeEvent,
  type NativeHookClient,
  type NativeHookRequest,
  type NativeHookResponse,
  type NativeOpenFileLimit,
  type NativeStats,
} from './native'

/**
 * Options of `Broker.start`: every config key in camelCase (all optional,
 * schema defaults), plus `logger`. `plugins` also takes plugin objects;
 * module paths in it are relative to the current directory.
 *
 * Listeners: without `listeners`, the broker listens for MQTT over TCP on
 * `host`:`port`, plus TLS, WebSocket and secure WebSocket on `host` at
 * `tlsPort`, `wsPort` and `wssPort` when given. With `listeners`, it opens
 * those, plus the ones of `tlsPort`, `wsPort` and `wssPort`, plus TCP on
 * `port` only when `port` is given (docs/listeners.md).
 */
export interface BrokerOptions extends Omit<Partial<BrokerSettings>, 'plugins'> {
  /** Auth plugins, asked in order: module paths, package names or plugin objects (see docs/plugins.md). */
  plugins?: readonly PluginSpec[]
  /**
   * Logger for broker and native-core log events. Default: a new logger built
   * from `logLevel` and `logFormat`. `false` disables logging (the native core
   * then produces no log events at all). When a logger is given and `logLevel`
   * is not, the native core filters at the logger's level.
   */
  logger?: Logger | false
  /**
   * With `persistence: 'redis'`: Sentinel, Cluster and ioredis options for
   * the store (see docs/persistence.md). `redisUrl` names a single Redis.
   */
  redisOptions?: Pick<
    RedisPersistenceOptions,
    'sentinels' | 'sentinelName' | 'cluster' | 'redisOptions' | 'db' | 'commandTimeoutMs' | 'connectTimeoutMs' | 'waitForReplicas'
  >
  /**
   * A persistence backend to use instead of the one `persistence` names
   * (e.g. a `MemoryPersistence` shared by two brokers in a test, or a
   * third backend). The caller opens nothing and keeps ownership: `close()`
   * does not close it.
   */
  persistenceBackend?: PersistenceBackend
}

export interface PublishOptions {
  /** Default 0. */
  qos?: 0 | 1 | 2
  /** Default false. */
  retain?: boolean
}

export type DisconnectReason = NativeDisconnectReason

export interface ClientConnectedEvent {
  clientId: string
  /** Remote "ip:port". */
  address: string
  username?: string
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5. */
  protocolVersion: number
  cleanSession: boolean
  sessionPresent: boolean
  /** Seconds. */
  keepAlive: number
}

export interface ClientDisconnectedEvent {
  clientId: string
  reason: DisconnectReason
}

export interface Subscription {
  topic: string
  qos: number
}

export interface SubscribedEvent {
  clientId: string
  /** Only the subscriptions the broker granted. */
  subscriptions: Subscription[]
}

export interface UnsubscribedEvent {
  clientId: string
  topics: string[]
}

/** Event name → listener arguments. */
/** A client's PUBLISH accepted for routing (opt-in: only while listened to; see `setMessageEventFilters`). */
export interface PublishedEvent {
  clientId: string
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
}

/** A PUBLISH written to a subscriber (`delivered`), or a QoS 1/2 delivery the subscriber completed (`acked`). */
export interface DeliveryEvent {
  /** The subscriber. */
  clientId: string
  topic: string
  qos: 0 | 1 | 2
  /** 0 for QoS 0. */
  packetId: number
}

/** A connection closed for a protocol violation (malformed packet, invalid topic, second CONNECT…). */
export interface ClientErrorEvent {
  clientId?: string
  message: string
}

export interface BrokerEvents {
  clientConnected: [event: ClientConnectedEvent]
  clientDisconnected: [event: ClientDisconnectedEvent]
  subscribed: [event: SubscribedEvent]
  unsubscribed: [event: UnsubscribedEvent]
  /** Per message, opt-in: produced in Rust only while a listener is attached, batched, topic-filtered in Rust. */
  published: [event: PublishedEvent]
  /** Per delivery, opt-in like `published`. */
  delivered: [event: DeliveryEvent]
  /** Per completed QoS 1/2 delivery, opt-in like `published`. */
  acked: [event: DeliveryEvent]
  clientError: [event: ClientErrorEvent]
  /** With a persistence store: it became unavailable (`degraded`), available again (`recovered`), or its buffer is full (`overflow`). Always logged too. */
  persistence: [event: PersistenceHealthEvent]
  /** Emitted only while something listens: a panic inside the native core (it is always logged too). */
  error: [error: Error]
}

/** A panic caught inside the native core. */
export class NativePanicError extends Error {
  readonly clientId?: string

  constructor(message: string, clientId?: string) {
    super(`native panic: ${message}`)
    this.name = 'NativePanicError'
    if (clientId !== undefined) this.clientId = clientId
  }
}

/** A listener the broker bound: its real port (when 0 was asked for), and how it was configured. */
export interface BoundListener extends NativeBoundListener {
  /** ws, wss: the HTTP path of the endpoint. */
  path?: string
  /** The connections start with a PROXY protocol header. */
  proxyProtocol?: boolean
  /** tls, wss: clients must present a certificate verified against the CA file. */
  requireCertificate?: boolean
  /** tls, wss: the client certificate's CN is the MQTT user name. */
  useIdentityAsUsername?: boolean
  /** The per-listener connection cap (0 = the global one only). */
  maxConnections?: number
  /** The setting that asked for it: `port`, `tlsPort`, `listeners[2]`… */
  origin?: string
}

/** What the broker authenticates and authorizes with (logged at startup, returned by `reloadAuth`). */
export interface AuthSummary {
  /** Whether clients no credential source vouched for may connect. */
  allowAnonymous: boolean
  /** Whether `allowAnonymous` was set explicitly (false: derived from the configured sources). */
  allowAnonymousExplicit: boolean
  /** The password file and its number of users, when configured. */
  passwordFile?: { path: string; users: number }
  /** The ACL file and its number of `topic`/`pattern` rules, when configured. */
  aclFile?: { path: string; rules: number }
  /** Loaded plugins in chain order, with the hooks each defines (the Redis source included, last). */
  plugins: Array<{ name: string; hooks: HookName[] }>
  /** The Redis credential source's URL (password redacted), when configured. */
  redisAuthUrl?: string
  /** Hooks at least one plugin defines: only these cross from the native core into JavaScript. */
  hooks: RegisteredHooks
}

/** Whether any credential source is configured (anonymous access then defaults to off). */
function hasCredentialSource(summary: Pick<AuthSummary, 'passwordFile' | 'redisAuthUrl' | 'hooks'>): boolean {
  return summary.passwordFile !== undefined || summary.redisAuthUrl !== undefined || summary.hooks.authenticate
}

function toClientInfo(c: NativeHookClient): ClientInfo {
  return { id: c.id, username: c.username ?? undefined, address: c.address, protocolVersion: c.protocolVersion }
}

type Listener<K extends keyof BrokerEvents> = (...args: BrokerEvents[K]) => void

// Typed overloads of the EventEmitter methods (merged into the class below).
export interface Broker {
  on<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  once<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  off<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  addListener<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  removeListener<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  prependListener<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  prependOnceListener<K extends keyof BrokerEvents>(event: K, listener: Listener<K>): this
  emit<K extends keyof BrokerEvents>(event: K, ...args: BrokerEvents[K]): boolean
}

/** Bits of `NativeBroker.setEventInterest`, by event name. */
const EVENT_INTEREST_BITS = {
  clientConnected: 1,
  clientDisconnected: 2,
  subscribed: 4,
  unsubscribed: 8,
  published: 16,
  delivered: 32,
  acked: 64,
  clientError: 128,
} as const

const NATIVE_LOG_LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])

/** Copies `fields` without its undefined entries. */
function defined<T extends object>(fields: T): T {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v
  return out as T
}

/**
 * The native core's bound listeners (in the order they were configured),
 * with what the configuration says about each. When the two lists do not
 * line up, the native ones are returned as they are.
 */
function describeBound(bound: NativeBoundListener[], configured: readonly ResolvedListener[]): BoundListener[] {
  const aligned = bound.length === configured.length && bound.every((b, i) => b.protocol === configured[i]!.type)
  return bound.map((b, i) => {
    const c = aligned ? configured[i] : undefined
    if (c === undefined) return { ...b }
    return defined<BoundListener>({
      protocol: b.protocol,
      host: b.host,
      port: b.port,
      path: c.path,
      proxyProtocol: c.proxyProtocol,
      requireCertificate: c.requireCertificate,
      useIdentityAsUsername: c.useIdentityAsUsername,
      maxConnections: c.maxConnections,
      origin: c.origin,
    })
  })
}

function toBuffer(payload: string | Buffer | Uint8Array): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8')
  if (Buffer.isBuffer(payload)) return payload
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  throw new TypeError('payload must be a string, Buffer or Uint8Array')
}

function nativeLogLevel(options: BrokerOptions, settings: BrokerSettings): LogLevel {
  if (options.logger === false) return 'silent'
  if (options.logger !== undefined && options.logLevel === undefined) {
    const level = options.logger.level
    return (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : 'info'
  }
  return settings.logLevel
}

/**
 * Opens the persistence store the settings ask for and reads its snapshot;
 * undefined for `persistence: memory` (the engine's own state, no journal).
 */
async function openPersistence(
  options: BrokerOptions,
  settings: BrokerSettings,
  logger: Logger,
): Promise<{ controller: PersistenceController; setup: NativePersistence } | undefined> {
  let backend = options.persistenceBackend
  const owns = backend === undefined
  if (backend === undefined) {
    if (settings.persistence !== 'redis') return undefined
    const programmatic = options.redisOptions?.sentinels !== undefined || options.redisOptions?.cluster !== undefined
    const problem = programmatic ? undefined : redisTargetProblem(settings)
    if (problem !== undefined) {
      // Broker options spell keys in camelCase, in the message too.
      const text = problem.problem.replace(/\bredis_[a-z_]+/g, (key) => camelCaseKey(key))
      throw new ConfigError([{ source: { kind: 'options' }, key: camelCaseKey(problem.key), problem: text }])
    }
    const target = redisTargetOptions(settings)
    backend = new RedisPersistence({
      ...target,
      ...options.redisOptions,
      redisOptions: { ...target.redisOptions, ...options.redisOptions?.redisOptions },
      prefix: settings.persistencePrefix,
      queue: { maxMessages: settings.maxQueuedMessages, maxBytes: settings.maxQueuedBytes, policy: settings.queueDropPolicy },
      logger,
    })
  }
  return await PersistenceController.open({
    backend,
    mode: settings.persistenceMode,
    logger,
    ownsBackend: owns,
    writer: { maxBufferedOps: settings.persistenceBufferMaxOps, maxBufferedBytes: settings.persistenceBufferMaxBytes },
  }).catch((err: unknown) => {
    const where =
      settings.redisSentinels.length > 0
        ? `${backend!.kind} (sentinels ${settings.redisSentinels.join(', ')}, master ${settings.redisSentinelName})`
        : settings.redisClusterNodes.length > 0
          ? `${backend!.kind} cluster (${settings.redisClusterNodes.join(', ')})`
          : settings.redisUrl === undefined
            ? backend!.kind
            : redactUrl(settings.redisUrl)
    throw new Error(`persistence store ${where} could not be opened: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  })
}

/**
 * An MQTT broker. The socket loop, codec, sessions and routing run in the
 * native core; this class configures it, forwards its lifecycle events as
 * typed EventEmitter events and its log events to a pino logger.
 *
 * ```ts
 * const broker = await Broker.start({ port: 1883 })
 * broker.on('clientConnected', (e) => console.log(e.clientId, e.address))
 * await broker.publish('greeting', 'hello', { qos: 1, retain: true })
 * await broker.close()
 * ```
 */
export class Broker extends EventEmitter {
  readonly #logger: Logger
  readonly #openFileLimit: NativeOpenFileLimit | undefined
  readonly #binding: NativeBinding
  readonly #settings: BrokerSettings
  readonly #chain: PluginChain
  readonly #redis: RedisAuthPlugin | undefined
  #auth: AuthSummary
  #native: NativeBroker | undefined
  /** Hook answers produced before `start` had the native handle (a client can connect that early). */
  #unsentAnswers: NativeHookResponse[] = []
  #listeners: BoundListener[] = []
  /** Whether a listener speaks TLS (SIGHUP then re-reads certificates). */
  #hasTls = false
  #closing: Promise<void> | undefined
  #persistence: PersistenceController | undefined
  #reloading: Promise<unknown> = Promise.resolve()
  #legacyHashWarned = false

  private constructor(
    logger: Logger,
    openFileLimit: NativeOpenFileLimit | undefined,
    binding: NativeBinding,
    settings: BrokerSettings,
    chain: PluginChain,
    redis: RedisAuthPlugin | undefined,
    auth: AuthSummary,
  ) {
    super()
    this.#logger = logger
    this.#openFileLimit = openFileLimit
    this.#binding = binding
    this.#settings = settings
    this.#chain = chain
    this.#redis = redis
    this.#auth = auth
  }

  /**
   * Validates the options (a `ConfigError` names any bad one), reads the
   * password and ACL files (a `ConfigError` names the key, the file and the
   * line of a problem), loads the plugins (a `PluginLoadError` names the
   * module), raises the open-file soft limit to the hard limit, binds the
   * listeners and starts serving. A listener problem (a TLS port without
   * `cert`, a certificate file that cannot be read, two listeners on one
   * port) is a `ConfigError` naming the option. Rejects with the native
   * error (naming the listener) if binding fails, e.g. EADDRINUSE, or if a
   * certificate file is not usable PEM.
   */
  static async start(options: BrokerOptions = {}): Promise<Broker> {
    const settings = resolveBrokerSettings(options as Record<string, unknown>, ['logger', 'plugins', 'redisOptions', 'persistenceBackend'])
    const listeners = resolveListeners(settings, options.port !== undefined)
    const pluginSpecs = options.plugins ?? []
    if (!Array.isArray(pluginSpecs)) {
      throw new ConfigError([
        {
          source: { kind: 'options' },
          key: 'plugins',
          problem: `expected a list of module paths or plugin objects, got ${showValue(pluginSpecs)}`,
        },
      ])
    }
    const logger =
      options.logger === false
        ? silentLogger()
        : (options.logger ?? createLogger({ level: settings.logLevel, format: settings.logFormat }))

    const binding = loadNativeBinding() // throws a helpful error when the native module is missing
    const files = await loadAuthFiles(binding, { passwordFile: settings.passwordFile, aclFile: settings.aclFile })
    const plugins = await loadPlugins(pluginSpecs as PluginSpec[], process.cwd())

    let openFileLimit: NativeOpenFileLimit | undefined
    try {
      openFileLimit = raiseOpenFileLimit()
    } catch (err) {
      logger.warn({ err }, 'could not raise the open-file limit')
    }
    if (openFileLimit !== undefined && settings.maxConnections > openFileLimit.soft) {
      logger.warn(
        { max_connections: settings.maxConnections, open_files_soft: openFileLimit.soft, open_files_hard: openFileLimit.hard },
        `max_connections (${settings.maxConnections}) exceeds the open-file limit (${openFileLimit.soft}): ` +
          'connections beyond it will fail. Raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections',
      )
    }

    // The Redis source is created last: it connects at once, so nothing may fail after it without closing it.
    const redis =
      settings.redisAuthUrl === undefined
        ? undefined
        : createRedisAuthPlugin({
            url: settings.redisAuthUrl,
            prefix: settings.redisAuthPrefix,
            cacheTtlMs: settings.redisAuthCacheTtlMs,
            logger,
          })
    const chainPlugins = redis === undefined ? plugins : [...plugins, redis]
    // The publish cache lives in the native core (per connection and topic), so the chain keeps none.
    const chain = new PluginChain(chainPlugins, { logger, hookTimeoutMs: settings.authHookTimeoutMs, publishCacheTtlMs: 0 })
    const hooks = chain.hooks

    const summary: AuthSummary = {
      allowAnonymous: true,
      allowAnonymousExplicit: settings.allowAnonymous !== undefined,
      plugins: chainPlugins.map((p) => ({ name: p.name, hooks: HOOK_NAMES.filter((h) => typeof p[h] === 'function') })),
      hooks,
    }
    if (settings.passwordFile !== undefined) summary.passwordFile = { path: settings.passwordFile, users: files.users }
    if (settings.aclFile !== undefined) summary.aclFile = { path: settings.aclFile, rules: files.aclRules }
    if (settings.redisAuthUrl !== undefined) summary.redisAuthUrl = redactUrl(settings.redisAuthUrl)
    summary.allowAnonymous = settings.allowAnonymous ?? !hasCredentialSource(summary)

    const config: NativeBrokerConfig = {
      listeners: listeners.map(toNativeListener),
      maxConnections: settings.maxConnections,
      maxPacketSize: settings.maxPacketSize,
      maxInflightMessages: settings.maxInflightMessages,
      maxQueuedMessages: settings.maxQueuedMessages,
      maxQueuedBytes: settings.maxQueuedBytes,
      queueDropPolicy: settings.queueDropPolicy,
      maxTopicLevels: settings.maxTopicLevels,
      maxTopicLength: settings.maxTopicLength,
      maxClientIdLength: settings.maxClientIdLength,
      connectTimeoutMs: settings.connectTimeoutMs,
      sessionExpirySecs: settings.sessionExpirySecs,
      workerThreads: settings.workerThreads,
      logLevel: nativeLogLevel(options, settings),
      allowAnonymous: summary.allowAnonymous,
      hooks,
      hookTimeoutMs: settings.authHookTimeoutMs,
      publishAuthCacheTtlMs: settings.authorizePublishCacheTtlMs,
    }
    if (files.passwordText !== undefined) config.passwordFile = files.passwordText
    if (files.aclText !== undefined) config.aclFile = files.aclText

    const broker = new Broker(logger, openFileLimit, binding, settings, chain, redis, summary)
    broker.#logFileWarnings(files)
    if (summary.allowAnonymous && hasCredentialSource(summary)) {
      logger.warn(
        'allow_anonymous is true while credentials are configured: clients WITHOUT credentials are accepted' +
          (summary.passwordFile === undefined ? ', and so are user names that no source checked' : '') +
          '. Set allow_anonymous: false (the default with an auth source) unless that is intended',
      )
    }
    const anyHook = hooks.authenticate || hooks.authorizeSubscribe || hooks.authorizePublish
    let native: NativeBroker
    let persistence: PersistenceController | undefined
    try {
      const opened = await openPersistence(options, settings, logger)
      persistence = opened?.controller
      broker.#persistence = persistence
      native = await startNativeBroker(
        config,
        (err, events) => broker.#dispatch(err, events),
        anyHook ? (err, requests) => broker.#onHooks(err, requests) : undefined,
        opened === undefined ? undefined : { setup: opened.setup, onPersist: (err, batch) => opened.controller.onBatch(err, batch) },
      )
    } catch (err) {
      await persistence?.close(0)
      await chain.close()
      throw err
    }
    persistence?.attach(native)
    persistence?.onHealth((event) => broker.emit('persistence', event))
    broker.#native = native
    broker.#listeners = describeBound(native.listeners(), listeners)
    broker.#hasTls = listeners.some((l) => usesTls(l.type))
    broker.#trackEventInterest()
    broker.#flushAnswers()
    logger.debug({ listeners: broker.#listeners }, 'broker started')
    return broker
  }

  /** What the broker authenticates and authorizes with. */
  get authSummary(): AuthSummary {
    return structuredClone(this.#auth)
  }

  /**
   * Re-reads the password file and the ACL file and swaps them in without
   * dropping connections (a connected client is checked against the new
   * ACL from its next packet on). Also forgets the Redis source's cached
   * users. On an unreadable or malformed file, nothing changes and the
   * promise rejects with a `ConfigError` naming the key, the file and the
   * line. Concurrent calls run one after another.
   */
  reloadAuth(): Promise<AuthSummary> {
    const run = this.#reloading.then(() => this.#reloadAuthNow())
    this.#reloading = run.catch(() => undefined)
    return run
  }

  async #reloadAuthNow(): Promise<AuthSummary> {
    const native = this.#running()
    const files = await loadAuthFiles(this.#binding, { passwordFile: this.#settings.passwordFile, aclFile: this.#settings.aclFile })
    this.#running()
    native.reloadAuth(files.passwordText ?? null, files.aclText ?? null)
    this.#logFileWarnings(files)
    this.#redis?.invalidate()
    this.#chain.clearCache()
    if (this.#auth.passwordFile !== undefined) this.#auth.passwordFile.users = files.users
    if (this.#auth.aclFile !== undefined) this.#auth.aclFile.rules = files.aclRules
    return this.authSummary
  }

  /**
   * Re-reads the certificate, key and CA files of every TLS and secure
   * WebSocket listener. New handshakes use the new files; established
   * connections are not touched. Returns one message per listener whose
   * files could not be loaded (naming the file): that listener keeps its
   * previous certificate. An empty list means every listener reloaded (or
   * there is no TLS listener). Throws after `close()`.
   */
  reloadTls(): string[] {
    const native = this.#running()
    if (!this.#hasTls) return []
    return native.reloadTls()
  }

  #logFileWarnings(files: LoadedAuthFiles): void {
    for (const warning of files.warnings) {
      if (isLegacyHashWarning(warning)) {
        if (this.#legacyHashWarned) continue
        this.#legacyHashWarned = true
      }
      this.#logger.warn(warning)
    }
  }

  /** The bound port of the first TCP listener (the real one when port 0 was asked for). */
  get port(): number {
    const listener = this.#listeners.find((l) => l.protocol === 'tcp') ?? this.#listeners[0]
    if (listener === undefined) throw new Error('broker has no listener')
    return listener.port
  }

  /**
   * Every bound listener (host and real port). Not called `listeners`: that
   * name belongs to EventEmitter's `listeners(eventName)`.
   */
  get boundListeners(): BoundListener[] {
    return this.#listeners.map((l) => ({ ...l }))
  }

  /** The process's open-file limits after `start` raised the soft limit, if they could be read. */
  get openFileLimit(): NativeOpenFileLimit | undefined {
    return this.#openFileLimit === undefined ? undefined : { ...this.#openFileLimit }
  }

  /**
   * The persistence store's state (undefined with `persistence: memory`):
   * `ok`, `degraded` (writes failing, buffered and retried) or `closed`,
   * what is buffered, the last error, and the backend's connection state.
   */
  get persistenceHealth(): ReturnType<PersistenceController['health']> | undefined {
    return this.#persistence?.health()
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined
  }

  /**
   * Publishes a message as if a client had sent it. Rejects on an invalid
   * topic name or options, or after `close()`.
   */
  async publish(topic: string, payload: string | Buffer | Uint8Array, options: PublishOptions = {}): Promise<void> {
    const native = this.#running()
    if (typeof topic !== 'string') throw new TypeError('topic must be a string')
    const qos = options.qos ?? 0
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new RangeError(`qos must be 0, 1 or 2, got ${String(qos)}`)
    const retain = options.retain ?? false
    if (typeof retain !== 'boolean') throw new TypeError('retain must be a boolean')
    native.publish(topic, toBuffer(payload), qos, retain)
  }

  /**
   * Disconnects the client with this id (its will message is published).
   * Returns false if no such client is connected, or the broker is closed.
   */
  disconnectClient(clientId: string): boolean {
    if (this.#closing !== undefined || this.#native === undefined) return false
    return this.#native.disconnectClient(clientId)
  }

  /** Counters of the native core. */
  stats(): NativeStats {
    if (this.#native === undefined) throw new Error('broker is not started')
    return this.#native.stats()
  }

  /**
   * Stops accepting connections and closes every open one, without
   * publishing will messages. Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#native !== undefined) {
        await this.#native.stop()
        this.#logger.debug('broker stopped')
      }
      // After the engine: its last journal batches are stored before the
      // store closes. They were queued to this thread before stop resolved;
      // a turn of the event loop lets their callbacks run first.
      if (this.#persistence !== undefined) {
        await new Promise((resolve) => setImmediate(resolve))
        await this.#persistence.close()
      }
      // After the engine: no hook request can arrive for a closed plugin.
      await this.#chain.close()
    })()
    return this.#closing
  }

  // -------------------------------------------------------------------------
  // Plugin hooks: the native core asks in batches, answers go back by id.

  #onHooks(err: Error | null | NativeHookRequest[], requests: NativeHookRequest[] | undefined): void {
    if (Array.isArray(err)) [err, requests] = [null, err]
    if (err) {
      // The requests of a lost batch time out in the engine, which refuses them.
      this.#logger.error({ err }, 'native hook delivery failed')
      return
    }
    const publishes: NativeHookRequest[] = []
    for (const request of requests ?? []) {
      switch (request.kind) {
        case 'authenticate':
          void this.#answerAuthenticate(request)
          break
        case 'authorizeSubscribe':
          void this.#answerSubscribe(request)
          break
        case 'authorizePublish':
          publishes.push(request)
          break
        default:
          this.#logger.error({ kind: (request as { kind: unknown }).kind }, 'unknown native hook request; it will time out and be refused')
      }
    }
    if (publishes.length > 0) void this.#answerPublishes(publishes)
  }

  async #answerAuthenticate(request: NativeHookRequest): Promise<void> {
    const client = toClientInfo(request.client)
    let response: NativeHookResponse
    try {
      const decision = await this.#chain.authenticate(client, request.username ?? undefined, request.password ?? undefined)
      response = { id: request.id, kind: 'authenticate' }
      if (decision.outcome === 'allow') response.code = ConnackCode.ACCEPTED
      else if (decision.outcome === 'deny') response.code = connackCodeFor(decision.returnCode, client.protocolVersion)
    } catch (err) {
      this.#logger.error({ err, clientId: client.id }, 'authenticate failed unexpectedly; refused')
      response = { id: request.id, kind: 'authenticate', code: connackCodeFor(ConnackCode.NOT_AUTHORIZED, client.protocolVersion) }
    }
    this.#answer([response])
  }

  async #answerSubscribe(request: NativeHookRequest): Promise<void> {
    const client = toClientInfo(request.client)
    const subscriptions = request.subscriptions ?? []
    let grants: number[]
    try {
      grants = await this.#chain.authorizeSubscribe(client, subscriptions)
    } catch (err) {
      this.#logger.error({ err, clientId: client.id }, 'authorizeSubscribe failed unexpectedly; refused')
      grants = subscriptions.map(() => SUBACK_FAILURE)
    }
    this.#answer([{ id: request.id, kind: 'authorizeSubscribe', grants }])
  }

  /** Every publish of the batch, from every request, goes through one `authorizePublishBatch` call. */
  async #answerPublishes(requests: NativeHookRequest[]): Promise<void> {
    const items: PublishAuthorizationItem[] = []
    for (const request of requests) {
      const client = toClientInfo(request.client)
      for (const p of request.publishes ?? []) items.push({ client, topic: p.topic, payload: p.payload, qos: p.qos, retain: p.retain })
    }
    let verdicts: boolean[]
    try {
      verdicts = await this.#chain.authorizePublishBatch(items)
    } catch (err) {
      this.#logger.error({ err }, 'authorizePublish failed unexpectedly; the batch is refused')
      verdicts = items.map(() => false)
    }
    const responses: NativeHookResponse[] = []
    let offset = 0
    for (const request of requests) {
      const count = request.publishes?.length ?? 0
      responses.push({ id: request.id, kind: 'authorizePublish', allowed: verdicts.slice(offset, offset + count) })
      offset += count
    }
    this.#answer(responses)
  }

  #answer(responses: NativeHookResponse[]): void {
    if (this.#native === undefined) {
      this.#unsentAnswers.push(...responses)
      return
    }
    try {
      this.#native.resolveHooks(responses)
    } catch (err) {
      // The engine refuses what it does not hear back about in time.
      this.#logger.error({ err }, 'could not pass plugin decisions to the native core')
    }
  }

  #flushAnswers(): void {
    if (this.#unsentAnswers.length === 0) return
    this.#answer(this.#unsentAnswers.splice(0))
  }

  #running(): NativeBroker {
    if (this.#closing !== undefined) throw new Error('broker is closed')
    if (this.#native === undefined) throw new Error('broker is not started')
    return this.#native
  }

  /**
   * Limits the per-message events (`published`, `delivered`, `acked`) to
   * topics matching these MQTT filters; an empty list (the default) means
   * every topic. The matching happens in Rust, before anything crosses.
   */
  setMessageEventFilters(filters: readonly string[]): void {
    this.#running().setMessageEventFilters([...filters])
  }

  /**
   * Tells the engine which lifecycle events have listeners, and keeps it up
   * to date as listeners come and go: the others are filtered in Rust, so a
   * broker nobody observes spends no JavaScript per connection.
   */
  #trackEventInterest(): void {
    let scheduled = false
    const update = () => {
      scheduled = false
      if (this.#native === undefined || this.#closing !== undefined) return
      let mask = 0
      for (const [name, bit] of Object.entries(EVENT_INTEREST_BITS)) if (this.listenerCount(name) > 0) mask |= bit
      this.#native.setEventInterest(mask)
    }
    const schedule = (name: string | symbol) => {
      if (!(name in EVENT_INTEREST_BITS) || scheduled) return
      scheduled = true
      // After the listener change has taken effect (newListener fires before it).
      queueMicrotask(update)
    }
    super.on('newListener', schedule)
    super.on('removeListener', schedule)
    update()
  }

  #dispatch(err: Error | null | NativeEvent[], events: NativeEvent[] | undefined): void {
    // Tolerate a callback that delivers the batch as its only argument.
    if (Array.isArray(err)) [err, events] = [null, err]
    if (err) {
      this.#logger.error({ err }, 'native event delivery failed')
      return
    }
    for (const event of events ?? []) {
      try {
        this.#dispatchOne(event)
      } catch (listenerError) {
        // A throwing listener must not cost the rest of the batch; it still
        // surfaces as an uncaught exception, as it would from any emitter.
        process.nextTick(() => {
          throw listenerError
        })
      }
    }
  }

  #dispatchOne(event: NativeEvent): void {
    switch (event.kind) {
      case 'log': {
        const level = event.level !== undefined && NATIVE_LOG_LEVELS.has(event.level) ? event.level : 'info'
        const fields = defined({ clientId: event.clientId })
        this.#logger[level as 'info'](fields, event.message ?? '')
        return
      }
      case 'panic': {
        const error = new NativePanicError(event.message ?? 'unknown', event.clientId)
        this.#logger.error(defined({ clientId: event.clientId }), error.message)
        if (this.listenerCount('error') > 0) this.emit('error', error)
        return
      }
      case 'clientConnected':
        this.emit(
          'clientConnected',
          defined({
            clientId: event.clientId!,
            address: event.address!,
            username: event.username,
            protocolVersion: event.protocolVersion!,
            cleanSession: event.cleanSession!,
            sessionPresent: event.sessionPresent!,
            keepAlive: event.keepAlive!,
          }),
        )
        return
      case 'clientDisconnected':
        if (event.clientId !== undefined) this.#chain.forgetClient(event.clientId)
        this.emit('clientDisconnected', defined({ clientId: event.clientId!, reason: event.reason as DisconnectReason }))
        return
      case 'subscribed':
        this.emit(
          'subscribed',
          defined({
            clientId: event.clientId!,
            subscriptions: (event.subscriptions ?? []).map((s) => ({ topic: s.topic, qos: s.qos })),
          }),
        )
        return
      case 'unsubscribed':
        this.emit('unsubscribed', defined({ clientId: event.clientId!, topics: event.topics ?? [] }))
        return
      case 'published':
        this.emit('published', {
          clientId: event.clientId!,
          topic: event.topic!,
          payload: event.payload ?? Buffer.alloc(0),
          qos: event.qos as 0 | 1 | 2,
          retain: event.retain === true,
        })
        return
      case 'delivered':
      case 'acked':
        this.emit(event.kind, {
          clientId: event.clientId!,
          topic: event.topic!,
          qos: event.qos as 0 | 1 | 2,
          packetId: event.packetId ?? 0,
        })
        return
      case 'clientError':
        this.emit('clientError', defined({ clientId: event.clientId, message: event.message ?? '' }))
        return
      default:
        this.#logger.debug({ kind: (event as { kind: unknown }).kind }, 'ignoring unknown native event')
    }
  }
}
