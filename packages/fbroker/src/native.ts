/**
 * The only module that touches the native binding (`@fbroker/binding`).
 *
 * The interfaces below are declared by hand and must match the binding's
 * generated `index.d.ts`. The binding is loaded lazily, on the first
 * `Broker.start`, so config handling and the CLI's `--help`/`--version` work
 * even where the native module is not built.
 */

import type { ResolvedListener } from './config/listeners'
import type { NativePersistBatch, NativePersistence } from './persistence/bridge'

export type { NativePersistBatch, NativePersistence } from './persistence/bridge'
export type NativePersistCallback = (err: Error | null, batch: NativePersistBatch) => void

/** One listener to bind. Optional fields may be left out (undefined). */
export interface NativeListenerConfig {
  protocol: 'tcp' | 'tls' | 'ws' | 'wss'
  host: string
  port: number
  /** per-listener cap; 0/undefined = only the global maxConnections applies */
  maxConnections?: number
  /** every connection starts with an HAProxy PROXY v1/v2 header */
  proxyProtocol?: boolean
  /** tls/wss: PEM paths (the cert file may hold the chain) */
  certFile?: string
  keyFile?: string
  caFile?: string
  /** tls/wss: refuse clients without a certificate verified against caFile */
  requireCertificate?: boolean
  /** tls/wss: the verified client certificate's CN becomes the MQTT username */
  useIdentityAsUsername?: boolean
  /** ws/wss: default '/mqtt' */
  wsPath?: string
  /** ws/wss: browser Origin allow-list, empty = any */
  allowedOrigins?: string[]
}

/** A resolved listener (config/listeners.ts) as the binding takes it; fields that do not apply to its type are left out. */
export function toNativeListener(listener: ResolvedListener): NativeListenerConfig {
  const out: NativeListenerConfig = { protocol: listener.type, host: listener.host, port: listener.port }
  if (listener.maxConnections !== 0) out.maxConnections = listener.maxConnections
  if (listener.proxyProtocol) out.proxyProtocol = true
  if (listener.type === 'tls' || listener.type === 'wss') {
    if (listener.cert !== undefined) out.certFile = listener.cert
    if (listener.key !== undefined) out.keyFile = listener.key
    if (listener.cafile !== undefined) out.caFile = listener.cafile
    out.requireCertificate = listener.requireCertificate === true
    out.useIdentityAsUsername = listener.useIdentityAsUsername === true
  }
  if (listener.type === 'ws' || listener.type === 'wss') {
    out.wsPath = listener.path ?? '/mqtt'
    out.allowedOrigins = [...(listener.allowedOrigins ?? [])]
  }
  return out
}

export interface NativeBrokerConfig {
  listeners: NativeListenerConfig[]
  /** 0 = unlimited */
  maxConnections: number
  /** bytes, whole packet */
  maxPacketSize: number
  /** per client, outbound QoS 1/2 window */
  maxInflightMessages: number
  /** per session (offline + over the inflight window); 0 = unlimited */
  maxQueuedMessages: number
  /** per session payload bytes; 0 = unlimited */
  maxQueuedBytes: number
  queueDropPolicy: 'drop_oldest' | 'drop_new'
  /** 0 = unlimited */
  maxTopicLevels: number
  /** bytes */
  maxTopicLength: number
  maxClientIdLength: number
  /** a socket that never sends CONNECT is closed after this long */
  connectTimeoutMs: number
  /** abandoned persistent (clean session = 0) sessions expire; 0 = never */
  sessionExpirySecs: number
  /** 0 = number of CPU cores */
  workerThreads: number
  /** Rust filters log events below this before crossing to JS */
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
  /** clients without a user name may connect */
  allowAnonymous: boolean
  /** password file contents (Mosquitto `$7$`/`$6$` lines or legacy sha256); checked in Rust */
  passwordFile?: string
  /** ACL file contents (Mosquitto format); compiled per client and checked in Rust */
  aclFile?: string
  /** plugin hooks that have at least one implementation: only these cross the FFI */
  hooks: NativeRegisteredHooks
  /** an unanswered hook request fails closed after this long */
  hookTimeoutMs: number
  /** authorizePublish answers are reused per (client, topic) for this long; 0 = no cache */
  publishAuthCacheTtlMs: number
}

export interface NativeRegisteredHooks {
  authenticate: boolean
  authorizeSubscribe: boolean
  authorizePublish: boolean
}

export interface NativeHookClient {
  id: string
  username?: string
  address: string
  protocolVersion: number
}

export interface NativePublishCheck {
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
}

/** A batched request from the engine for a plugin decision. */
export interface NativeHookRequest {
  id: number
  kind: 'authenticate' | 'authorizeSubscribe' | 'authorizePublish'
  client: NativeHookClient
  /** authenticate */
  username?: string
  /** authenticate */
  password?: Buffer
  /** authorizeSubscribe: the SUBSCRIBE's filters and requested QoS */
  subscriptions?: NativeSubscription[]
  /** authorizePublish: every publish of one read batch without a cached answer */
  publishes?: NativePublishCheck[]
}

export interface NativeHookResponse {
  id: number
  kind: NativeHookRequest['kind']
  /** authenticate: 0 accepts, another number is the CONNACK return code; absent = no plugin answered */
  code?: number
  /** authorizeSubscribe: granted QoS ceiling per filter, or 128 (0x80) */
  grants?: number[]
  /** authorizePublish: one verdict per publish */
  allowed?: boolean[]
}

export type NativeHookCallback = (err: Error | null, requests: NativeHookRequest[]) => void

export interface NativeBoundListener {
  /** 'tcp' | 'tls' | 'ws' | 'wss' */
  protocol: string
  host: string
  port: number
}

export interface NativeSubscription {
  topic: string
  qos: number
}

export type NativeDisconnectReason =
  | 'normal'
  | 'keepAliveTimeout'
  | 'takeover'
  | 'protocolError'
  | 'socketError'
  | 'serverShutdown'
  | 'administrative'
  | 'connectTimeout'

export interface NativeEvent {
  kind:
    | 'clientConnected'
    | 'clientDisconnected'
    | 'subscribed'
    | 'unsubscribed'
    | 'published'
    | 'delivered'
    | 'acked'
    | 'clientError'
    | 'log'
    | 'panic'
  clientId?: string
  /** "ip:port" */
  address?: string
  username?: string
  /** 3, 4 or 5 */
  protocolVersion?: number
  cleanSession?: boolean
  sessionPresent?: boolean
  keepAlive?: number
  /** clientDisconnected: one of NativeDisconnectReason */
  reason?: string
  /** subscribed: only the granted subscriptions */
  subscriptions?: NativeSubscription[]
  /** unsubscribed */
  topics?: string[]
  /** log: trace|debug|info|warn|error */
  level?: string
  /** log / panic / clientError */
  message?: string
  /** published / delivered / acked */
  topic?: string
  /** published */
  payload?: Buffer
  /** published / delivered / acked */
  qos?: number
  /** published */
  retain?: boolean
  /** delivered / acked (0 for QoS 0) */
  packetId?: number
}

export interface NativeStats {
  connections: number
  sessions: number
  subscriptions: number
  retainedMessages: number
  messagesReceived: number
  messagesSent: number
  bytesReceived: number
  bytesSent: number
  /** messages dropped by offline/inflight queue limits (every drop counted) */
  publishDropped: number
  /** publishes refused by the ACL or a plugin (acknowledged, not routed) */
  publishDenied: number
  /** lifecycle events dropped because the JS event queue was full */
  eventsDropped: number
  /** lifecycle and log events handed to JS (kinds nobody listens to are never produced) */
  eventsDelivered: number
  uptimeSecs: number
}

export interface NativeOpenFileLimit {
  soft: number
  hard: number
}

export type NativeEventCallback = (err: Error | null, events: NativeEvent[]) => void

/** A running native broker (an instance of the binding's `NativeBroker` class). */
export interface NativeBroker {
  listeners(): NativeBoundListener[]
  /** Inject a message as if a client published it. Throws on an invalid topic name. */
  publish(topic: string, payload: Buffer, qos: number, retain: boolean): void
  /** True if a connected client had that id. Its will IS published (administrative disconnect). */
  disconnectClient(clientId: string): boolean
  stats(): NativeStats
  /**
   * Which lifecycle events to send, as a mask (clientConnected 1, clientDisconnected 2,
   * subscribed 4, unsubscribed 8). Kinds left out are filtered in Rust and never built.
   */
  setEventInterest(mask: number): void
  /** Limits published / delivered / acked events to these topic filters (empty = every topic); matched in Rust. */
  setMessageEventFilters(filters: string[]): void
  /** Answers hook requests by id (late answers to timed-out requests are ignored). */
  resolveHooks(responses: NativeHookResponse[]): void
  /** Swaps in new password file / ACL contents (undefined = not configured) without dropping connections; throws on a parse error. */
  reloadAuth(passwordFile: string | undefined | null, aclFile: string | undefined | null): void
  /**
   * Re-reads every TLS listener's certificate, key and CA files; new
   * handshakes use them, established connections are untouched. Returns one
   * error message per listener that failed (it keeps its previous
   * certificate); empty = all reloaded.
   */
  reloadTls(): string[]
  /** Answers persistence journal batch `seq` (in order): stored, or not (its publishers are then refused). */
  persistAck(seq: number, stored: boolean): void
  /** Stop accepting, close every connection WITHOUT publishing wills, resolve when done. */
  stop(): Promise<void>
}

/** The static side of the binding's `NativeBroker` class. */
export interface NativeBrokerClass {
  /** Binds every listener (port 0 = ephemeral) and starts serving. Rejects with an Error naming the listener on bind failure. */
  start(
    config: NativeBrokerConfig,
    onEvents: NativeEventCallback,
    onHooks?: NativeHookCallback | null,
    persistence?: NativePersistence | null,
    onPersist?: NativePersistCallback | null,
  ): Promise<NativeBroker>
}

/** What `require('@fbroker/binding')` returns. */
export interface NativeBinding {
  NativeBroker: NativeBrokerClass
  /** Raises the process soft RLIMIT_NOFILE to the hard limit; returns the resulting limits. */
  raiseOpenFileLimit(): NativeOpenFileLimit
  /** Parses password file / ACL contents; returns warnings, throws "… line N: …" on an error. */
  checkAuthFiles(passwordFile?: string | null, aclFile?: string | null): string[]
  /** A Mosquitto-compatible `$7$` PBKDF2-SHA512 hash with a fresh salt. */
  hashPassword(password: Buffer, iterations: number): string
}

let binding: NativeBinding | undefined

/**
 * Loads `@fbroker/binding` (once). Throws an Error explaining how to build it
 * when the native module is missing or fails to load; the loader's error is
 * kept as `cause`.
 */
export function loadNativeBinding(): NativeBinding {
  if (binding !== undefined) return binding
  try {
    binding = require('@fbroker/binding') as NativeBinding
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message.split('\n')[0] : String(cause)
    throw new Error(
      `cannot load the fbroker native module (@fbroker/binding): ${detail}. ` +
        'Build it with `npm run build -w @fbroker/binding` (needs a Rust toolchain), ' +
        'or install a package that ships a prebuilt binary for this platform.',
      { cause },
    )
  }
  return binding
}

/** Starts a native broker. */
export function startNativeBroker(
  config: NativeBrokerConfig,
  onEvents: NativeEventCallback,
  onHooks?: NativeHookCallback,
  persistence?: { setup: NativePersistence; onPersist: NativePersistCallback },
): Promise<NativeBroker> {
  return loadNativeBinding().NativeBroker.start(config, onEvents, onHooks ?? null, persistence?.setup ?? null, persistence?.onPersist ?? null)
}

/** Raises the soft open-file limit to the hard limit (native); returns the resulting limits. */
export function raiseOpenFileLimit(): NativeOpenFileLimit {
  return loadNativeBinding().raiseOpenFileLimit()
}
