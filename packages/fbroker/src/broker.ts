import { EventEmitter } from 'node:events'
import { resolveBrokerSettings } from './config/load'
import { LOG_LEVELS, type BrokerSettings, type LogLevel } from './config/schema'
import { createLogger, silentLogger, type Logger } from './log'
import {
  loadNativeBinding,
  raiseOpenFileLimit,
  startNativeBroker,
  type NativeBoundListener,
  type NativeBroker,
  type NativeBrokerConfig,
  type NativeDisconnectReason,
  type NativeEvent,
  type NativeOpenFileLimit,
  type NativeStats,
} from './native'

/** Options of `Broker.start`: every config key in camelCase (all optional, schema defaults), plus `logger`. */
export interface BrokerOptions extends Partial<BrokerSettings> {
  /**
   * Logger for broker and native-core log events. Default: a new logger built
   * from `logLevel` and `logFormat`. `false` disables logging (the native core
   * then produces no log events at all). When a logger is given and `logLevel`
   * is not, the native core filters at the logger's level.
   */
  logger?: Logger | false
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
export interface BrokerEvents {
  clientConnected: [event: ClientConnectedEvent]
  clientDisconnected: [event: ClientDisconnectedEvent]
  subscribed: [event: SubscribedEvent]
  unsubscribed: [event: UnsubscribedEvent]
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

const NATIVE_LOG_LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])

/** Copies `fields` without its undefined entries. */
function defined<T extends object>(fields: T): T {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v
  return out as T
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
  #native: NativeBroker | undefined
  #listeners: NativeBoundListener[] = []
  #closing: Promise<void> | undefined

  private constructor(logger: Logger, openFileLimit: NativeOpenFileLimit | undefined) {
    super()
    this.#logger = logger
    this.#openFileLimit = openFileLimit
  }

  /**
   * Validates the options (a `ConfigError` names any bad one), raises the
   * open-file soft limit to the hard limit, binds the listener and starts
   * serving. Rejects with the native error (naming the listener) if binding
   * fails, e.g. EADDRINUSE.
   */
  static async start(options: BrokerOptions = {}): Promise<Broker> {
    const settings = resolveBrokerSettings(options as Record<string, unknown>, ['logger'])
    const logger =
      options.logger === false
        ? silentLogger()
        : (options.logger ?? createLogger({ level: settings.logLevel, format: settings.logFormat }))

    loadNativeBinding() // throws a helpful error when the native module is missing
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

    const config: NativeBrokerConfig = {
      listeners: [{ protocol: 'tcp', host: settings.host, port: settings.port }],
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
      allowAnonymous: true,
      hooks: { authenticate: false, authorizeSubscribe: false, authorizePublish: false },
      hookTimeoutMs: 5000,
      publishAuthCacheTtlMs: 1000,
    }

    const broker = new Broker(logger, openFileLimit)
    const native = await startNativeBroker(config, (err, events) => broker.#dispatch(err, events))
    broker.#native = native
    broker.#listeners = native.listeners()
    logger.debug({ listeners: broker.#listeners }, 'broker started')
    return broker
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
  get boundListeners(): NativeBoundListener[] {
    return this.#listeners.map((l) => ({ ...l }))
  }

  /** The process's open-file limits after `start` raised the soft limit, if they could be read. */
  get openFileLimit(): NativeOpenFileLimit | undefined {
    return this.#openFileLimit === undefined ? undefined : { ...this.#openFileLimit }
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
      if (this.#native === undefined) return
      await this.#native.stop()
      this.#logger.debug('broker stopped')
    })()
    return this.#closing
  }

  #running(): NativeBroker {
    if (this.#closing !== undefined) throw new Error('broker is closed')
    if (this.#native === undefined) throw new Error('broker is not started')
    return this.#native
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
      default:
        this.#logger.debug({ kind: (event as { kind: unknown }).kind }, 'ignoring unknown native event')
    }
  }
}
