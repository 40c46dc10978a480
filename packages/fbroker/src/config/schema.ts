/**
 * The configuration schema: every key the broker understands, with its type,
 * default, validation and documentation. This array is the single source of
 * truth: the config loader, the `Broker` options, the environment variables,
 * `fbroker start --help` and the README table are all derived from it.
 */

/** Largest value of an unsigned 32-bit integer: the native side stores every integer setting in a u32. */
export const U32_MAX = 4_294_967_295

/** Largest MQTT packet the protocol can express (the Remaining Length field's maximum). */
export const MQTT_MAX_PACKET_SIZE = 268_435_455

import type { ListenerConfig, ListenerOptions } from './listeners'

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const
export const QUEUE_DROP_POLICIES = ['drop_oldest', 'drop_new'] as const
export const PERSISTENCE_BACKENDS = ['memory', 'redis'] as const
export const PERSISTENCE_MODES = ['ack_after_store', 'async'] as const

export type LogLevel = (typeof LOG_LEVELS)[number]
export type LogFormat = (typeof LOG_FORMATS)[number]
export type QueueDropPolicy = (typeof QUEUE_DROP_POLICIES)[number]

interface KeySpecBase {
  /** snake_case name, as written in config files. */
  readonly key: string
  /** One-line description (Markdown allowed: backticks only). */
  readonly doc: string
  /** The `fbroker start` flag that sets this key, if it has one. */
  readonly flag?: string
}

export interface IntegerKeySpec extends KeySpecBase {
  readonly type: 'integer'
  /** undefined: not set (e.g. `tls_port`: no TLS listener). */
  readonly default: number | undefined
  /** What an unset value means, for the documentation (when `default` is undefined). */
  readonly defaultDoc?: string
  /** Inclusive bounds. */
  readonly min: number
  readonly max: number
}

export interface StringKeySpec extends KeySpecBase {
  readonly type: 'string'
  /** undefined: not set (a listener's `host`: the top-level `host`). */
  readonly default: string | undefined
  readonly defaultDoc?: string
}

export interface EnumKeySpec extends KeySpecBase {
  readonly type: 'enum'
  readonly values: readonly string[]
  /** undefined: no default (a listener's `type` must be given). */
  readonly default: string | undefined
}

/** true or false. Text (environment variables, flags) may also say 1 or 0. */
export interface BooleanKeySpec extends KeySpecBase {
  readonly type: 'boolean'
  /** undefined: not set; the broker then decides at start (see `defaultDoc`). */
  readonly default: boolean | undefined
  /** What an unset value means, for the documentation (when `default` is undefined). */
  readonly defaultDoc?: string
}

/**
 * An optional file path (unset by default). A relative path in a config
 * file is relative to that file's directory; elsewhere, to the current
 * directory. The loader makes it absolute.
 */
export interface PathKeySpec extends KeySpecBase {
  readonly type: 'path'
  readonly default: undefined
}

/** An optional URL (unset by default) with one of the given schemes. */
export interface UrlKeySpec extends KeySpecBase {
  readonly type: 'url'
  readonly default: undefined
  /** Accepted schemes, with the colon: `redis:`. */
  readonly protocols: readonly string[]
}

/**
 * A list of plugin modules: file paths or package names. In a config file,
 * relative paths are relative to the file's directory. An environment
 * variable holds a comma-separated list; a repeated command-line flag
 * appends to the list of the other sources.
 */
export interface ModuleListKeySpec extends KeySpecBase {
  readonly type: 'module-list'
  readonly default: readonly string[]
}

/** The path part of an HTTP URL (the WebSocket endpoint): starts with `/`, no query or fragment. */
export interface HttpPathKeySpec extends KeySpecBase {
  readonly type: 'http-path'
  readonly default: string
}

/**
 * Browser origins (`https://example.com`, `http://localhost:8080`), as the
 * `Origin` header of a WebSocket handshake carries them. Returned in their
 * serialized form (lower-case host, default port left out).
 */
export interface OriginListKeySpec extends KeySpecBase {
  readonly type: 'origin-list'
  readonly default: readonly string[]
}

/**
 * Network addresses `host:port` (an IPv6 host in brackets: `[::1]:26379`),
 * e.g. Redis Sentinel or Cluster nodes. An environment variable or flag
 * holds a comma-separated list.
 */
export interface AddressListKeySpec extends KeySpecBase {
  readonly type: 'address-list'
  readonly default: readonly string[]
}

/**
 * The `listeners` list: mappings validated key by key by `./listeners`
 * (every problem names its path, `listeners[2].cert`). Unset by default.
 * An environment variable holds the list as JSON.
 */
export interface ListenerListKeySpec extends KeySpecBase {
  readonly type: 'listener-list'
  readonly default: undefined
  readonly defaultDoc: string
}

export type ConfigKeySpec =
  | IntegerKeySpec
  | StringKeySpec
  | EnumKeySpec
  | BooleanKeySpec
  | PathKeySpec
  | UrlKeySpec
  | ModuleListKeySpec
  | HttpPathKeySpec
  | OriginListKeySpec
  | AddressListKeySpec
  | ListenerListKeySpec

export const CONFIG_SCHEMA = [
  {
    key: 'host',
    type: 'string',
    default: '0.0.0.0',
    flag: '--host',
    doc: 'Address the listeners of `port`, `tls_port`, `ws_port` and `wss_port` bind to, and the default `host` of `listeners` items: an IP address or host name (`0.0.0.0` = every IPv4 interface, `::` = every IPv6 interface).',
  },
  {
    key: 'port',
    type: 'integer',
    default: 1883,
    min: 0,
    max: 65_535,
    flag: '--port',
    doc: 'Port of the plain TCP MQTT listener on `host`; 0 picks a free ephemeral port (the bound port is logged at startup). With a `listeners` list, this listener is only added when `port` is set explicitly (docs/listeners.md).',
  },
  {
    key: 'tls_port',
    type: 'integer',
    default: undefined,
    defaultDoc: 'none (no TLS listener)',
    min: 0,
    max: 65_535,
    flag: '--tls-port',
    doc: 'Port of an MQTT-over-TLS listener on `host` (8883 is customary). Needs `cert` and `key`; `cafile`, `require_certificate` and `use_identity_as_username` apply to it.',
  },
  {
    key: 'ws_port',
    type: 'integer',
    default: undefined,
    defaultDoc: 'none (no WebSocket listener)',
    min: 0,
    max: 65_535,
    flag: '--ws-port',
    doc: 'Port of an MQTT-over-WebSocket listener on `host`, serving `ws_path`.',
  },
  {
    key: 'wss_port',
    type: 'integer',
    default: undefined,
    defaultDoc: 'none (no secure WebSocket listener)',
    min: 0,
    max: 65_535,
    flag: '--wss-port',
    doc: 'Port of an MQTT-over-secure-WebSocket (WebSocket over TLS) listener on `host`, serving `ws_path`. Needs `cert` and `key`, like `tls_port`.',
  },
  {
    key: 'cert',
    type: 'path',
    default: undefined,
    flag: '--cert',
    doc: 'PEM server certificate of the `tls_port` and `wss_port` listeners, optionally followed by its intermediate CA certificates (the chain). Re-read on SIGHUP.',
  },
  {
    key: 'key',
    type: 'path',
    default: undefined,
    flag: '--key',
    doc: 'PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`. Re-read on SIGHUP.',
  },
  {
    key: 'cafile',
    type: 'path',
    default: undefined,
    flag: '--cafile',
    doc: 'PEM CA certificates that client certificates on the `tls_port` and `wss_port` listeners are verified against. Without it, client certificates are not asked for.',
  },
  {
    key: 'require_certificate',
    type: 'boolean',
    default: false,
    flag: '--require-certificate',
    doc: 'Refuse TLS clients on `tls_port` and `wss_port` that present no certificate verified against `cafile` (which it needs).',
  },
  {
    key: 'use_identity_as_username',
    type: 'boolean',
    default: false,
    doc: 'On `tls_port` and `wss_port`, the common name (CN) of the verified client certificate becomes the client\'s MQTT user name, replacing any CONNECT user name; ACLs and plugins see it. Needs `cafile`; use it with `require_certificate: true`.',
  },
  {
    key: 'ws_path',
    type: 'http-path',
    default: '/mqtt',
    flag: '--ws-path',
    doc: 'HTTP path of the `ws_port` and `wss_port` WebSocket endpoints; other paths get 404.',
  },
  {
    key: 'listeners',
    type: 'listener-list',
    default: undefined,
    defaultDoc: 'none: one TCP listener on `host`:`port`',
    doc: 'Listeners, each a mapping with `type` (`tcp`, `tls`, `ws`, `wss`), `port` and optional `host`, `max_connections`, `proxy_protocol`, `cert`, `key`, `cafile`, `require_certificate`, `use_identity_as_username`, `path`, `allowed_origins`; see docs/listeners.md. When set, the TCP listener on `port` is only added if `port` is set explicitly. `FBROKER_LISTENERS` holds the list as JSON.',
  },
  {
    key: 'log_level',
    type: 'enum',
    values: LOG_LEVELS,
    default: 'info',
    flag: '--log-level',
    doc: 'Least severe log level written. Also applied inside the native core, so filtered events never cross into JavaScript.',
  },
  {
    key: 'log_format',
    type: 'enum',
    values: LOG_FORMATS,
    default: 'auto',
    doc: '`pretty`: human-readable lines; `json`: one JSON object per line; `auto`: pretty when stdout is a terminal, JSON otherwise.',
  },
  {
    key: 'max_connections',
    type: 'integer',
    default: 100_000,
    min: 0,
    max: U32_MAX,
    doc: 'Most client connections open at once; further connections are refused. 0 = unlimited. Each connection uses a file descriptor, so keep it under the open-file limit.',
  },
  {
    key: 'max_packet_size',
    type: 'integer',
    default: 1_048_576,
    min: 2,
    max: MQTT_MAX_PACKET_SIZE,
    doc: 'Largest MQTT packet accepted, in bytes, counting the whole packet. A client sending a bigger one is disconnected. Default 1 MiB; the protocol maximum is 268435455.',
  },
  {
    key: 'max_inflight_messages',
    type: 'integer',
    default: 20,
    min: 1,
    max: 65_535,
    doc: 'Per client: QoS 1 and 2 messages sent to it and not yet acknowledged. Further messages wait in the session queue.',
  },
  {
    key: 'max_queued_messages',
    type: 'integer',
    default: 1000,
    min: 0,
    max: U32_MAX,
    doc: 'Per session: messages held while the client is offline or its in-flight window is full. 0 = unlimited. When full, `queue_drop_policy` decides what is dropped.',
  },
  {
    key: 'max_queued_bytes',
    type: 'integer',
    default: 0,
    min: 0,
    max: U32_MAX,
    doc: 'Per session: total payload bytes of the queued messages. 0 = unlimited. When full, `queue_drop_policy` decides what is dropped.',
  },
  {
    key: 'queue_drop_policy',
    type: 'enum',
    values: QUEUE_DROP_POLICIES,
    default: 'drop_oldest',
    doc: 'What a full session queue drops: `drop_oldest` discards the oldest queued message to make room, `drop_new` discards the arriving one. Every drop is counted in `stats().publishDropped`.',
  },
  {
    key: 'max_topic_levels',
    type: 'integer',
    default: 128,
    min: 0,
    max: 65_535,
    doc: 'Most levels (`/`-separated parts) in a topic name or filter; longer ones are rejected. 0 = unlimited.',
  },
  {
    key: 'max_topic_length',
    type: 'integer',
    default: 65_535,
    min: 1,
    max: 65_535,
    doc: 'Longest topic name or filter accepted, in bytes of UTF-8.',
  },
  {
    key: 'max_client_id_length',
    type: 'integer',
    default: 65_535,
    min: 1,
    max: 65_535,
    doc: 'Longest client identifier accepted, in bytes; longer ones are refused (CONNACK "identifier rejected"). MQTT expects brokers to accept at least 23.',
  },
  {
    key: 'connect_timeout_ms',
    type: 'integer',
    default: 10_000,
    min: 1,
    max: U32_MAX,
    doc: 'Milliseconds a new connection has to send its CONNECT packet before it is closed.',
  },
  {
    key: 'session_expiry_secs',
    type: 'integer',
    default: 7200,
    min: 0,
    max: U32_MAX,
    doc: 'Seconds a persistent session (clean session = 0) outlives its disconnected client before it is discarded with its subscriptions and queue. 0 = never.',
  },
  {
    key: 'worker_threads',
    type: 'integer',
    default: 0,
    min: 0,
    max: 1024,
    doc: 'Threads of the native network runtime. 0 = one per CPU core.',
  },
  {
    key: 'allow_anonymous',
    type: 'boolean',
    default: undefined,
    defaultDoc: 'auto: `false` when an auth source is configured, else `true`',
    flag: '--allow-anonymous',
    doc: 'Whether clients that no credential source vouched for may connect: clients without a user name, and, when there is no `password_file`, user names that no plugin answered for. Refused ones get CONNACK 5. (With a `password_file`, a user name that nothing vouched for is always refused, with 4.) Unset, it is `false` as soon as `password_file`, `redis_auth_url` or a plugin with an `authenticate` hook is configured, and `true` otherwise.',
  },
  {
    key: 'password_file',
    type: 'path',
    default: undefined,
    flag: '--password-file',
    doc: 'Mosquitto-format password file (`user:$7$…` lines, as written by `fbroker passwd` or `mosquitto_passwd`; `$6$` and legacy SHA-256 hex are accepted). Checked in the native core. Re-read on SIGHUP.',
  },
  {
    key: 'acl_file',
    type: 'path',
    default: undefined,
    flag: '--acl-file',
    doc: 'Mosquitto-format ACL file (`user`, `topic`, `pattern` with `%c`/`%u`, `deny`). Checked in the native core for every publish, subscribe and delivery. Re-read on SIGHUP.',
  },
  {
    key: 'plugins',
    type: 'module-list',
    default: [],
    flag: '--plugin',
    doc: 'Auth plugin modules (`.mjs`, `.cjs`, `.js` or package names), asked in order; see docs/plugins.md. Paths in a config file are relative to its directory. `FBROKER_PLUGINS` is comma-separated; `--plugin` is repeatable and appends.',
  },
  {
    key: 'auth_hook_timeout_ms',
    type: 'integer',
    default: 5000,
    min: 1,
    max: U32_MAX,
    doc: 'Milliseconds the native core waits for a plugin decision (the whole chain) before it refuses: CONNACK 5, SUBACK 0x80 or a dropped publish.',
  },
  {
    key: 'authorize_publish_cache_ttl_ms',
    type: 'integer',
    default: 0,
    min: 0,
    max: U32_MAX,
    doc: 'Milliseconds the native core reuses an `authorizePublish` answer for the same connection and topic, whatever the payload, QoS and retain flag. 0 = off. Safe only when every `authorizePublish` hook decides by client and topic alone.',
  },
  {
    key: 'persistence',
    type: 'enum',
    values: PERSISTENCE_BACKENDS,
    default: 'memory',
    flag: '--persistence',
    doc: 'Where durable state lives. `memory`: in the broker process only (nothing survives a restart; no per-message cost). `redis`: sessions, subscriptions, offline queues, in-flight QoS 1/2 state, inbound QoS 2 ids, retained messages and wills are written to Redis at `redis_url` and restored at start; see docs/persistence.md.',
  },
  {
    key: 'redis_url',
    type: 'url',
    default: undefined,
    protocols: ['redis:', 'rediss:'],
    flag: '--redis-url',
    doc: 'Redis for `persistence: redis`: `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS). With `redis_sentinels` or `redis_cluster_nodes` its host is not used, but its user, password, database and TLS scheme are.',
  },
  {
    key: 'redis_sentinels',
    type: 'address-list',
    default: [],
    flag: '--redis-sentinels',
    doc: 'Redis Sentinel for `persistence: redis`: the sentinels, `host:port` each. The broker asks them for the master named `redis_sentinel_name` and follows failovers.',
  },
  {
    key: 'redis_sentinel_name',
    type: 'string',
    default: 'mymaster',
    doc: 'The master name the sentinels of `redis_sentinels` monitor.',
  },
  {
    key: 'redis_cluster_nodes',
    type: 'address-list',
    default: [],
    flag: '--redis-cluster-nodes',
    doc: 'Redis Cluster for `persistence: redis`: some of its nodes, `host:port` each; the rest are discovered. A client\'s keys share one hash slot (docs/persistence.md).',
  },
  {
    key: 'persistence_mode',
    type: 'enum',
    values: PERSISTENCE_MODES,
    default: 'ack_after_store',
    doc: '`ack_after_store`: a QoS 1/2 publish that has to be stored (queued for a persistent session, retained, inbound QoS 2 state) is acknowledged only once Redis has it, so a crash loses nothing acknowledged. `async`: acknowledge at once and store in the background; a crash can lose the last writes.',
  },
  {
    key: 'persistence_prefix',
    type: 'string',
    default: 'fbroker:',
    doc: 'Prefix of every Redis key the persistence store writes.',
  },
  {
    key: 'persistence_buffer_max_ops',
    type: 'integer',
    default: 100_000,
    min: 1,
    max: U32_MAX,
    doc: 'During a Redis outage: journal operations kept in memory for retry. Past this (or `persistence_buffer_max_bytes`), publishes that need storing are refused (MQTT 3.1.1: the connection is closed without acknowledging).',
  },
  {
    key: 'persistence_buffer_max_bytes',
    type: 'integer',
    default: 64 * 1024 * 1024,
    min: 1,
    max: U32_MAX,
    doc: 'During a Redis outage: payload bytes kept in memory for retry (see `persistence_buffer_max_ops`).',
  },
  {
    key: 'redis_auth_url',
    type: 'url',
    default: undefined,
    protocols: ['redis:', 'rediss:'],
    doc: 'Enables the Redis credential source: `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS). Users are hashes with a `password` field and an optional `acl` field; it is asked after the plugins.',
  },
  {
    key: 'redis_auth_prefix',
    type: 'string',
    default: 'fbroker:auth:user:',
    doc: 'Key prefix of the Redis credential source: a user is the hash at the prefix followed by the user name.',
  },
  {
    key: 'redis_auth_cache_ttl_ms',
    type: 'integer',
    default: 5000,
    min: 0,
    max: U32_MAX,
    doc: 'Milliseconds the Redis source reuses a looked-up user (or its absence) before asking Redis again. 0 = no cache.',
  },
] as const satisfies readonly ConfigKeySpec[]

type SchemaEntry = (typeof CONFIG_SCHEMA)[number]

/** Every config key, snake_case. */
export type ConfigKey = SchemaEntry['key']

type ValueOfSpec<S> = S extends { readonly type: 'integer'; readonly default: number }
  ? number
  : S extends { readonly type: 'integer' }
    ? number | undefined
  : S extends { readonly type: 'listener-list' }
    ? ListenerConfig[] | undefined
  : S extends { readonly type: 'enum'; readonly values: readonly (infer V)[] }
    ? V
    : S extends { readonly type: 'boolean'; readonly default: boolean }
      ? boolean
      : S extends { readonly type: 'boolean' }
        ? boolean | undefined
        : S extends { readonly type: 'path' | 'url' }
          ? string | undefined
          : S extends { readonly type: 'module-list' | 'address-list' }
            ? string[]
            : string

/** The fully resolved configuration, snake_case keys (what `loadConfig` returns). */
export type FbrokerConfig = {
  -readonly [K in ConfigKey]: ValueOfSpec<Extract<SchemaEntry, { readonly key: K }>>
}

/** `max_inflight_messages` → `maxInflightMessages`, at the type level. */
export type SnakeToCamel<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<SnakeToCamel<Tail>>}`
  : S

/**
 * The same settings as `FbrokerConfig`, camelCase keys (what `Broker.start`
 * takes). `listeners` items have camelCase keys too.
 */
export type BrokerSettings = {
  -readonly [K in Exclude<ConfigKey, 'listeners'> as SnakeToCamel<K>]: FbrokerConfig[K]
} & {
  listeners: ListenerOptions[] | undefined
}

export const CONFIG_KEYS: readonly ConfigKey[] = CONFIG_SCHEMA.map((s) => s.key)

const SPEC_BY_KEY: ReadonlyMap<string, ConfigKeySpec> = new Map(CONFIG_SCHEMA.map((s) => [s.key, s]))

/** The spec of a key, or undefined for an unknown key. */
export function specFor(key: string): ConfigKeySpec | undefined {
  return SPEC_BY_KEY.get(key)
}

/** `max_inflight_messages` → `maxInflightMessages`. */
export function camelCaseKey(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** `max_inflight_messages` → `FBROKER_MAX_INFLIGHT_MESSAGES`. */
export function envVarName(key: string): string {
  return `FBROKER_${key.toUpperCase()}`
}

/** The command-line flag of a key (`--port`), or undefined if it has none. */
export function flagName(key: string): string | undefined {
  return specFor(key)?.flag
}

/** Human-readable type of a key, e.g. `integer (0–65535)` or `"auto" \| "pretty" \| "json"`. */
export function describeType(spec: ConfigKeySpec): string {
  switch (spec.type) {
    case 'integer':
      return `integer (${spec.min}–${spec.max})`
    case 'string':
      return 'string'
    case 'enum':
      return spec.values.map((v) => `"${v}"`).join(' | ')
    case 'boolean':
      return 'boolean'
    case 'path':
      return 'file path'
    case 'url':
      return `URL (${spec.protocols.map((p) => `${p}//`).join(', ')})`
    case 'module-list':
      return 'list of modules'
    case 'http-path':
      return 'URL path'
    case 'origin-list':
      return 'list of origins'
    case 'address-list':
      return 'list of host:port'
    case 'listener-list':
      return 'list of listeners'
  }
}

/**
 * The default of a key as documentation shows it: JSON for a literal
 * default, the `defaultDoc` (or "none") for a key that is unset by default.
 */
export function defaultText(spec: ConfigKeySpec): { text: string; literal: boolean } {
  if (spec.default === undefined) return { text: ('defaultDoc' in spec && spec.defaultDoc) || 'none', literal: false }
  return { text: JSON.stringify(spec.default), literal: true }
}

/** One row per key, for generating documentation (the README table, `--help`). */
export interface ConfigKeyRow {
  key: ConfigKey
  type: string
  /** JSON of the default, or a description when `literalDefault` is false. */
  default: string
  /** Whether `default` is a literal value (shown as code) rather than a description. */
  literalDefault: boolean
  env: string
  flag?: string
  option: string
  doc: string
}

export function configKeyTable(): ConfigKeyRow[] {
  return CONFIG_SCHEMA.map((spec: ConfigKeySpec) => {
    const shown = defaultText(spec)
    const row: ConfigKeyRow = {
      key: spec.key as ConfigKey,
      type: describeType(spec),
      default: shown.text,
      literalDefault: shown.literal,
      env: envVarName(spec.key),
      option: camelCaseKey(spec.key),
      doc: spec.doc,
    }
    if ('flag' in spec) row.flag = spec.flag
    return row
  })
}

// ---------------------------------------------------------------------------
// Validation

/** A resolved setting's value. */
export type ConfigValue = number | string | boolean | string[] | ListenerConfig[] | ListenerOptions[] | undefined

export type CheckResult<T = ConfigValue> = { ok: true; value: T } | { ok: false; problem: string }

function expectation(spec: ConfigKeySpec): string {
  switch (spec.type) {
    case 'integer':
      if (spec.max === U32_MAX) {
        if (spec.min === 0) return 'expected a non-negative integer'
        if (spec.min === 1) return 'expected a positive integer'
        return `expected an integer of at least ${spec.min}`
      }
      return `expected an integer between ${spec.min} and ${spec.max}`
    case 'string':
      return 'expected a non-empty string without whitespace'
    case 'enum':
      return `expected one of ${spec.values.map((v) => `"${v}"`).join(', ')}`
    case 'boolean':
      return 'expected true or false'
    case 'path':
      return 'expected a file path'
    case 'url':
      return `expected a ${spec.protocols.map((p) => `${p}//`).join(' or ')} URL`
    case 'module-list':
      return 'expected a list of module paths or package names'
    case 'http-path':
      return 'expected a URL path starting with "/" (no spaces, query or fragment)'
    case 'origin-list':
      return 'expected a list of origins such as "https://example.com" (or "*")'
    case 'address-list':
      return 'expected a list of addresses such as "10.0.0.5:26379" or "[::1]:7000"'
    case 'listener-list':
      return 'expected a list of listeners (mappings with at least "type" and "port")'
  }
}

/** How a value is shown in an error message. */
export function showValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null || value === undefined) return String(value)
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  return String(value)
}

function fail(spec: ConfigKeySpec, value: unknown, hint = ''): CheckResult<never> {
  return { ok: false, problem: `${expectation(spec)}, got ${showValue(value)}${hint}` }
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/

/**
 * A list key: each entry mapped by `entry` (undefined: not valid, named by
 * its position); a lone string gets a hint to write a list.
 */
function checkList(spec: ConfigKeySpec, value: unknown, entry: (item: unknown) => string | undefined): CheckResult<string[]> {
  if (!Array.isArray(value)) {
    const hint = typeof value === 'string' ? ` (write a list: [${JSON.stringify(value)}])` : ''
    return fail(spec, value, hint)
  }
  const out: string[] = []
  for (const [i, item] of value.entries()) {
    const mapped = entry(item)
    if (mapped === undefined) return { ok: false, problem: `${expectation(spec)}, got ${showValue(item)} at position ${i + 1}` }
    out.push(mapped)
  }
  return { ok: true, value: out }
}

/** Whether a key may be left unset (its default is undefined): then null means "unset" too. */
export function isOptional(spec: ConfigKeySpec): boolean {
  return spec.default === undefined
}

/**
 * Validates a typed value (from a YAML/JSON file or `Broker` options): integers
 * must be numbers, strings must be strings, booleans booleans, lists lists.
 * Enum values are matched without regard to case and returned in their
 * canonical (lower) case. For a key that is unset by default, `null` means
 * unset.
 */
export function checkValue(spec: ConfigKeySpec, value: unknown): CheckResult {
  if (value === null && isOptional(spec)) return { ok: true, value: undefined }
  switch (spec.type) {
    case 'integer': {
      if (typeof value !== 'number') {
        const hint = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? ' (a string: remove the quotes)' : ''
        return fail(spec, value, hint)
      }
      if (!Number.isInteger(value)) return fail(spec, value)
      if (value < spec.min || value > spec.max) {
        const bound = spec.max === U32_MAX && value > spec.max ? ` (at most ${spec.max})` : ''
        return fail(spec, value, bound)
      }
      return { ok: true, value }
    }
    case 'string': {
      if (typeof value !== 'string' || value.length === 0 || /[\s\u0000-\u001f]/.test(value)) return fail(spec, value)
      return { ok: true, value }
    }
    case 'enum': {
      if (typeof value !== 'string') return fail(spec, value)
      const canonical = spec.values.find((v) => v === value.toLowerCase())
      if (canonical === undefined) return fail(spec, value)
      return { ok: true, value: canonical }
    }
    case 'boolean': {
      if (typeof value !== 'boolean') {
        const hint = typeof value === 'string' && /^\s*(true|false)\s*$/i.test(value) ? ' (a string: remove the quotes)' : ''
        return fail(spec, value, hint)
      }
      return { ok: true, value }
    }
    case 'path': {
      if (typeof value !== 'string' || value.trim() === '' || CONTROL_CHARS.test(value)) return fail(spec, value)
      return { ok: true, value }
    }
    case 'url': {
      if (typeof value !== 'string' || value.length === 0 || /[\s\u0000-\u001f]/.test(value)) return fail(spec, value)
      let url: URL
      try {
        url = new URL(value)
      } catch {
        return fail(spec, redactUrl(value))
      }
      if (!spec.protocols.includes(url.protocol)) return fail(spec, redactUrl(value))
      return { ok: true, value }
    }
    case 'module-list':
      return checkList(spec, value, (entry) => (typeof entry !== 'string' || entry.trim() === '' || CONTROL_CHARS.test(entry) ? undefined : entry))
    case 'http-path': {
      if (typeof value !== 'string' || !value.startsWith('/') || /[\s\u0000-\u001f\u007f?#]/.test(value)) return fail(spec, value)
      return { ok: true, value }
    }
    case 'origin-list':
      return checkList(spec, value, (entry) => (entry === '*' ? '*' : typeof entry === 'string' ? parseOrigin(entry) : undefined))
    case 'address-list':
      return checkList(spec, value, (entry) => (typeof entry === 'string' && parseAddress(entry) !== undefined ? entry : undefined))
    case 'listener-list':
      // Validated item by item, with a key path per problem, by ./listeners.
      if (!Array.isArray(value)) return fail(spec, value)
      return { ok: true, value: value as ListenerConfig[] }
  }
}

/**
 * The serialized origin (`https://example.com`, `http://localhost:8080`) of
 * `text`, or undefined when it is not an http(s) origin: a scheme and a
 * host, optionally a port, nothing else (a trailing `/` is tolerated).
 */
export function parseOrigin(text: string): string | undefined {
  if (!/^https?:\/\/[^\s/?#@]+\/?$/i.test(text)) return undefined
  try {
    const url = new URL(text)
    return url.origin === 'null' ? undefined : url.origin
  } catch {
    return undefined
  }
}

/** `host:port` (`[v6]:port`) split, or undefined when it is not an address with a port of 1–65535. */
export function parseAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/@]+)):(\d{1,5})$/.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port < 1 || port > 65535) return undefined
  return { host: m[1] ?? m[2]!, port }
}

/** A URL with its password (if any) replaced by `***`, for logs and errors. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text)
    if (url.password === '') return text
    url.password = '***'
    return url.toString()
  } catch {
    // Not parseable: hide anything between "//" and "@".
    return text.replace(/\/\/[^/@]*@/, '//***@')
  }
}

/**
 * Parses and validates text (an environment variable or a command-line flag)
 * by the key's type: integers must be plain decimal digits, booleans `true`,
 * `false`, `1` or `0` (any case), module lists are comma-separated.
 */
export function parseText(spec: ConfigKeySpec, text: string): CheckResult {
  switch (spec.type) {
    case 'integer': {
      const trimmed = text.trim()
      if (!/^\d+$/.test(trimmed)) return fail(spec, text)
      return checkValue(spec, Number(trimmed))
    }
    case 'boolean': {
      const word = text.trim().toLowerCase()
      if (word === 'true' || word === '1') return { ok: true, value: true }
      if (word === 'false' || word === '0') return { ok: true, value: false }
      return { ok: false, problem: `expected true, false, 1 or 0, got ${showValue(text)}` }
    }
    case 'module-list':
    case 'origin-list':
    case 'address-list': {
      const entries = text.split(',').map((e) => e.trim()).filter((e) => e !== '')
      return checkValue(spec, entries)
    }
    case 'listener-list': {
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch (err) {
        return { ok: false, problem: `expected a JSON list of listeners: ${err instanceof Error ? err.message : String(err)}` }
      }
      return checkValue(spec, parsed)
    }
    default:
      return checkValue(spec, text.trim())
  }
}

/** The defaults of every key (keys that are unset by default are present, with undefined). */
export function defaultConfig(): FbrokerConfig {
  const out: Record<string, ConfigValue> = {}
  for (const spec of CONFIG_SCHEMA as readonly ConfigKeySpec[]) {
    const value = spec.default
    out[spec.key] = typeof value === 'object' ? [...value] : value
  }
  return out as FbrokerConfig
}
