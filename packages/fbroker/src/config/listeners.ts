/**
 * Listeners: the `listeners` list of a config file (or of `Broker.start`
 * options), the top-level shortcuts `port`, `tls_port`, `ws_port` and
 * `wss_port`, and the rule that combines them into the list of sockets the
 * broker opens. docs/listeners.md describes all of it for users.
 *
 * The combining rule:
 * - without a `listeners` list, the broker opens the TCP listener on
 *   `host`:`port` (1883 by default), plus one listener on `host` for each
 *   of `tls_port`, `ws_port` and `wss_port` that is set;
 * - with a `listeners` list, it opens the listed ones, plus one for each of
 *   `tls_port`, `ws_port` and `wss_port` that is set, plus the TCP listener
 *   on `port` only when `port` itself is set (in the file, the environment
 *   or a flag; a `Broker.start` option that is given);
 * - two listeners on the same address and port (other than 0) are an error.
 *
 * The top-level `cert`, `key`, `cafile`, `require_certificate`,
 * `use_identity_as_username` and `ws_path` belong to the `tls_port`,
 * `ws_port` and `wss_port` listeners only; a `listeners` item names its
 * own.
 */
import { accessSync, constants, statSync } from 'node:fs'
import { isIPv4, isIPv6 } from 'node:net'
import * as path from 'node:path'
import { ConfigError, type ConfigIssue, type ConfigSource } from './errors'
import {
  U32_MAX,
  camelCaseKey,
  checkValue,
  defaultText,
  describeType,
  showValue,
  type BrokerSettings,
  type ConfigKeySpec,
} from './schema'
import { unknownKeyProblem } from './suggest'

export const LISTENER_TYPES = ['tcp', 'tls', 'ws', 'wss'] as const
export type ListenerType = (typeof LISTENER_TYPES)[number]

const TLS_TYPES: readonly ListenerType[] = ['tls', 'wss']
const WS_TYPES: readonly ListenerType[] = ['ws', 'wss']

/** Whether a listener of this type speaks TLS (`tls`, `wss`). */
export function usesTls(type: ListenerType): boolean {
  return TLS_TYPES.includes(type)
}

/** Whether a listener of this type speaks WebSocket (`ws`, `wss`). */
export function usesWebSocket(type: ListenerType): boolean {
  return WS_TYPES.includes(type)
}

/** A `listeners` item as a config file gives it, validated, with defaults filled in (what `FbrokerConfig.listeners` holds). */
export interface ListenerConfig {
  type: ListenerType
  host: string
  port: number
  max_connections: number
  proxy_protocol: boolean
  /** tls, wss */
  cert?: string
  /** tls, wss */
  key?: string
  /** tls, wss */
  cafile?: string
  /** tls, wss */
  require_certificate?: boolean
  /** tls, wss */
  use_identity_as_username?: boolean
  /** ws, wss */
  path?: string
  /** ws, wss */
  allowed_origins?: string[]
}

/** A `listeners` item of `Broker.start` options (camelCase keys; only `type` and `port` are required). */
export interface ListenerOptions {
  type: ListenerType
  /** Default: the `host` option. */
  host?: string
  /** 0 = a free ephemeral port. */
  port: number
  /** Per-listener connection cap; 0 (the default) = only the global `maxConnections` applies. */
  maxConnections?: number
  /** Every connection starts with an HAProxy PROXY protocol (v1 or v2) header. */
  proxyProtocol?: boolean
  /** tls, wss (required): PEM certificate, optionally followed by its chain. Relative paths: from the current directory. */
  cert?: string
  /** tls, wss (required): PEM private key of `cert`. */
  key?: string
  /** tls, wss: PEM CA certificates client certificates are verified against. */
  cafile?: string
  /** tls, wss: refuse clients without a certificate verified against `cafile`. */
  requireCertificate?: boolean
  /** tls, wss: the verified client certificate's CN becomes the MQTT user name. */
  useIdentityAsUsername?: boolean
  /** ws, wss: HTTP path of the endpoint, default `/mqtt`. */
  path?: string
  /** ws, wss: browser origins allowed (the `Origin` header); empty = any. */
  allowedOrigins?: string[]
}

/** A listener the broker opens, every setting resolved. */
export interface ResolvedListener {
  type: ListenerType
  host: string
  port: number
  /** 0 = only the global cap applies. */
  maxConnections: number
  proxyProtocol: boolean
  /** tls, wss: absolute paths. */
  cert?: string
  key?: string
  cafile?: string
  requireCertificate?: boolean
  useIdentityAsUsername?: boolean
  /** ws, wss */
  path?: string
  allowedOrigins?: string[]
  /**
   * The setting that asked for it: `port`, `tls_port`, `ws_port`,
   * `wss_port` or `listeners[N]` (camelCase names for `Broker.start`
   * options: `tlsPort`).
   */
  origin: string
}

type ListenerKeySpec = ConfigKeySpec & {
  /** Must be given. */
  readonly required?: boolean
  /** The listener types that take this key; every type when absent. */
  readonly only?: readonly ListenerType[]
}

/** The keys of a `listeners` item (snake_case, as in config files). */
export const LISTENER_KEY_SCHEMA: readonly ListenerKeySpec[] = [
  {
    key: 'type',
    type: 'enum',
    values: LISTENER_TYPES,
    default: undefined,
    required: true,
    doc: '`tcp`: MQTT over TCP; `tls`: MQTT over TLS; `ws`: MQTT over WebSocket; `wss`: MQTT over WebSocket over TLS.',
  },
  {
    key: 'host',
    type: 'string',
    default: undefined,
    defaultDoc: 'the top-level `host`',
    doc: 'Address to bind: an IP address or host name (`0.0.0.0` = every IPv4 interface, `::` = every IPv6 interface).',
  },
  {
    key: 'port',
    type: 'integer',
    default: undefined,
    min: 0,
    max: 65_535,
    required: true,
    doc: 'Port to bind; 0 picks a free ephemeral port (logged at startup).',
  },
  {
    key: 'max_connections',
    type: 'integer',
    default: 0,
    min: 0,
    max: U32_MAX,
    doc: 'Most connections open at once on this listener; further ones are refused. 0 = only the global `max_connections` applies.',
  },
  {
    key: 'proxy_protocol',
    type: 'boolean',
    default: false,
    doc: 'Every connection starts with an HAProxy PROXY protocol header (v1 or v2), whose source address becomes the client address. Only for a listener that only a proxy sending the header can reach.',
  },
  {
    key: 'cert',
    type: 'path',
    default: undefined,
    required: true,
    only: TLS_TYPES,
    doc: 'PEM server certificate, optionally followed by its intermediate CA certificates. Relative to the config file. Re-read on SIGHUP.',
  },
  {
    key: 'key',
    type: 'path',
    default: undefined,
    required: true,
    only: TLS_TYPES,
    doc: 'PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`. Re-read on SIGHUP.',
  },
  {
    key: 'cafile',
    type: 'path',
    default: undefined,
    only: TLS_TYPES,
    doc: 'PEM CA certificates that client certificates are verified against. Without it, client certificates are not asked for.',
  },
  {
    key: 'require_certificate',
    type: 'boolean',
    default: false,
    only: TLS_TYPES,
    doc: 'Refuse clients that present no certificate verified against `cafile` (which it needs).',
  },
  {
    key: 'use_identity_as_username',
    type: 'boolean',
    default: false,
    only: TLS_TYPES,
    doc: 'The common name (CN) of the verified client certificate becomes the MQTT user name. Needs `cafile`; use it with `require_certificate: true`.',
  },
  {
    key: 'path',
    type: 'http-path',
    default: '/mqtt',
    only: WS_TYPES,
    doc: 'HTTP path of the WebSocket endpoint; other paths get 404.',
  },
  {
    key: 'allowed_origins',
    type: 'origin-list',
    default: [],
    only: WS_TYPES,
    doc: 'Browser origins (`https://app.example.com`) allowed to connect, matched against the `Origin` header; a handshake from another origin gets 403. Empty (or `*`) = any. Clients that send no `Origin` (not browsers) are not affected.',
  },
]

const LISTENER_SPEC_BY_KEY: ReadonlyMap<string, ListenerKeySpec> = new Map(LISTENER_KEY_SCHEMA.map((s) => [s.key, s]))

/** One row per `listeners` item key, for documentation (docs/listeners.md). */
export interface ListenerKeyRow {
  key: string
  /** The camelCase name in `Broker.start` options. */
  option: string
  type: string
  default: string
  literalDefault: boolean
  /** The listener types that take the key. */
  types: readonly ListenerType[]
  doc: string
}

export function listenerKeyTable(): ListenerKeyRow[] {
  return LISTENER_KEY_SCHEMA.map((spec) => {
    const shown = spec.required && spec.default === undefined ? { text: 'required', literal: false } : defaultText(spec)
    return {
      key: spec.key,
      option: camelCaseKey(spec.key),
      type: describeType(spec),
      default: shown.text,
      literalDefault: shown.literal,
      types: spec.only ?? LISTENER_TYPES,
      doc: spec.doc,
    }
  })
}

// ---------------------------------------------------------------------------
// Validating a list

/** How keys are spelled in a source: snake_case (files, environment, flags) or camelCase (`Broker.start` options). */
export type KeyStyle = 'snake' | 'camel'

function named(style: KeyStyle, snakePath: string): string {
  return style === 'camel' ? camelCaseKey(snakePath) : snakePath
}

/** A validated item whose `host` may still be the top-level one (filled in by `withHost`). */
export type ListenerItem = Omit<ListenerConfig, 'host'> & { host?: string }

export interface ListenerListContext {
  style: KeyStyle
  /** The source to name for a key path (`listeners[2].cert`): files give the line of that key, or of its nearest parent. */
  sourceOf(keyPath: string): ConfigSource
  /** Relative `cert`, `key` and `cafile` paths are resolved against this directory. */
  baseDir: string
}

/**
 * Validates a `listeners` value key by key. Every problem is an issue that
 * names its key path (`listeners[2].cert`, 0-based) in the source's style.
 * Returns the items with defaults filled in and paths made absolute; a
 * `host` that is not given stays unset (see `withHost`).
 */
export function checkListenerList(value: unknown, ctx: ListenerListContext, listKey = 'listeners'): { items: ListenerItem[]; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = []
  const items: ListenerItem[] = []
  const problem = (keyPath: string, text: string) => issues.push({ source: ctx.sourceOf(keyPath), key: named(ctx.style, keyPath), problem: text })

  if (!Array.isArray(value)) {
    const hint = value !== null && typeof value === 'object' ? ' (write a list: one "- type: …" entry per listener)' : ''
    problem(listKey, `expected a list of listeners (mappings with at least "type" and "port"), got ${showValue(value)}${hint}`)
    return { items, issues }
  }
  const knownNames = LISTENER_KEY_SCHEMA.map((s) => named(ctx.style, s.key))
  for (const [index, raw] of value.entries()) {
    const at = `${listKey}[${index}]`
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problem(at, `expected a mapping with at least "type" and "port", got ${showValue(raw)}`)
      continue
    }
    const before = issues.length
    const given = new Map<string, unknown>()
    for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
      const snake = ctx.style === 'camel' ? snakeFromCamel(name) : name
      const spec = LISTENER_SPEC_BY_KEY.get(snake)
      if (spec === undefined || named(ctx.style, spec.key) !== name) {
        issues.push({ source: ctx.sourceOf(`${at}.${name}`), key: `${named(ctx.style, at)}.${name}`, problem: unknownKeyProblem(name, knownNames) })
        continue
      }
      const result = checkValue(spec, entry)
      if (!result.ok) {
        problem(`${at}.${spec.key}`, result.problem)
        continue
      }
      if (result.value !== undefined) given.set(spec.key, result.value)
    }

    const type = given.get('type') as ListenerType | undefined
    const typeProblem = issues.slice(before).some((i) => i.key === named(ctx.style, `${at}.type`))
    if (type === undefined && !typeProblem) {
      problem(`${at}.type`, `required: one of ${LISTENER_TYPES.map((t) => `"${t}"`).join(', ')}`)
    }
    if (!given.has('port') && !issues.slice(before).some((i) => i.key === named(ctx.style, `${at}.port`))) {
      problem(`${at}.port`, 'required: the port to listen on (0 = any free port)')
    }
    if (type === undefined) continue

    for (const spec of LISTENER_KEY_SCHEMA) {
      if (spec.only === undefined) continue
      const applies = spec.only.includes(type)
      if (!applies && given.has(spec.key)) {
        problem(`${at}.${spec.key}`, `not used by a ${type} listener (only by ${spec.only.join(' and ')} listeners)`)
      } else if (applies && spec.required && !given.has(spec.key)) {
        problem(`${at}.${spec.key}`, `required for a ${type} listener`)
      }
    }
    if (usesTls(type) && !given.has('cafile')) {
      for (const key of ['require_certificate', 'use_identity_as_username']) {
        if (given.get(key) === true) problem(`${at}.${key}`, `needs ${named(ctx.style, 'cafile')}: the CA certificates that client certificates are verified against`)
      }
    }
    if (issues.length > before) continue

    const item: ListenerItem = {
      type,
      port: given.get('port') as number,
      max_connections: (given.get('max_connections') as number | undefined) ?? 0,
      proxy_protocol: (given.get('proxy_protocol') as boolean | undefined) ?? false,
    }
    const host = given.get('host') as string | undefined
    if (host !== undefined) item.host = host
    if (usesTls(type)) {
      item.cert = path.resolve(ctx.baseDir, given.get('cert') as string)
      item.key = path.resolve(ctx.baseDir, given.get('key') as string)
      const cafile = given.get('cafile') as string | undefined
      if (cafile !== undefined) item.cafile = path.resolve(ctx.baseDir, cafile)
      item.require_certificate = (given.get('require_certificate') as boolean | undefined) ?? false
      item.use_identity_as_username = (given.get('use_identity_as_username') as boolean | undefined) ?? false
    }
    if (usesWebSocket(type)) {
      item.path = (given.get('path') as string | undefined) ?? '/mqtt'
      item.allowed_origins = (given.get('allowed_origins') as string[] | undefined) ?? []
    }
    items.push(item)
  }
  return { items, issues }
}

/** `requireCertificate` → `require_certificate` (only for names that are camelCase: others map to themselves). */
function snakeFromCamel(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** The items with the top-level `host` wherever they do not name their own. */
export function withHost(items: readonly ListenerItem[], host: string): ListenerConfig[] {
  return items.map((item) => ({ ...item, host: item.host ?? host, ...(item.allowed_origins ? { allowed_origins: [...item.allowed_origins] } : {}) }))
}

/** A config file's (snake_case) listener as `Broker.start` options (camelCase). */
export function listenerOptionsFromConfig(item: ListenerConfig): ListenerOptions {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(item)) {
    if (value !== undefined) out[camelCaseKey(key)] = Array.isArray(value) ? [...(value as unknown[])] : value
  }
  return out as unknown as ListenerOptions
}

/** `Broker.start` (camelCase) listener options as a config file's (snake_case) listener; the inverse of `listenerOptionsFromConfig`. */
function listenerConfigFromOptions(item: ListenerOptions, host: string): ListenerConfig {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(item)) if (value !== undefined) out[snakeFromCamel(key)] = value
  out.host ??= host
  return out as unknown as ListenerConfig
}

// ---------------------------------------------------------------------------
// Combining

/** The settings that decide which listeners the broker opens. */
export interface ListenerSettings {
  host: string
  port: number
  /** Whether `port` was set explicitly: with a `listeners` list, only then does it add a TCP listener. */
  portExplicit: boolean
  tlsPort: number | undefined
  wsPort: number | undefined
  wssPort: number | undefined
  cert: string | undefined
  key: string | undefined
  cafile: string | undefined
  requireCertificate: boolean
  useIdentityAsUsername: boolean
  wsPath: string
  /** The `listeners` list (hosts filled in), or undefined when not set. */
  listeners: readonly ListenerConfig[] | undefined
}

export interface CombineContext {
  style: KeyStyle
  /** The source of a key (`tls_port`, `listeners[2].port`; snake_case) as it was set. */
  sourceOf(keyPath: string): ConfigSource
  /** How to tell a user to set a top-level key, for "required" problems (`--cert, FBROKER_CERT or the config file`). */
  howToSet?(key: string): string | undefined
  /** Whether the files named by `cert`, `key` and `cafile` are checked for readability (default true). */
  checkFiles?: boolean
}

function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Two binds to the same port collide: the same host, or a wildcard address and an address of its family. */
function hostsCollide(a: string, b: string): boolean {
  const norm = (h: string) => h.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  const x = norm(a)
  const y = norm(b)
  if (x === y) return true
  const covers = (wild: string, other: string) =>
    (wild === '0.0.0.0' && isIPv4(other)) || ((wild === '::' || wild === '::0') && isIPv6(other))
  return covers(x, y) || covers(y, x)
}

function readProblem(file: string): string | undefined {
  try {
    if (statSync(file).isDirectory()) return `cannot read ${file}: it is a directory, not a file`
    accessSync(file, constants.R_OK)
    return undefined
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code
    switch (code) {
      case 'ENOENT':
      case 'ENOTDIR':
        return `cannot read ${file}: file not found`
      case 'EACCES':
      case 'EPERM':
        return `cannot read ${file}: permission denied`
      default:
        return `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`
    }
  }
}

/**
 * The listeners the broker opens, by the combining rule (module comment),
 * with every problem as an issue naming the key and its source: a `tls_port`
 * or `wss_port` without `cert` or `key`, `require_certificate` or
 * `use_identity_as_username` without `cafile`, top-level TLS or WebSocket
 * keys that no listener uses, two listeners on one address and port, no
 * listener at all, and (unless `checkFiles` is false) certificate files
 * that do not exist or cannot be read.
 */
export function combineListeners(settings: ListenerSettings, ctx: CombineContext): { listeners: ResolvedListener[]; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = []
  const n = (key: string) => named(ctx.style, key)
  const problem = (keyPath: string, text: string, sourceKey = keyPath) => issues.push({ source: ctx.sourceOf(sourceKey), key: n(keyPath), problem: text })
  const listeners: ResolvedListener[] = []

  if (settings.listeners === undefined || settings.portExplicit) {
    listeners.push({ type: 'tcp', host: settings.host, port: settings.port, maxConnections: 0, proxyProtocol: false, origin: n('port') })
  }
  const tlsFields = {
    ...(settings.cert === undefined ? {} : { cert: settings.cert }),
    ...(settings.key === undefined ? {} : { key: settings.key }),
    ...(settings.cafile === undefined ? {} : { cafile: settings.cafile }),
    requireCertificate: settings.requireCertificate,
    useIdentityAsUsername: settings.useIdentityAsUsername,
  }
  const portKeys = [
    ['tls_port', 'tls', settings.tlsPort],
    ['ws_port', 'ws', settings.wsPort],
    ['wss_port', 'wss', settings.wssPort],
  ] as const
  for (const [key, type, port] of portKeys) {
    if (port === undefined) continue
    listeners.push({
      type,
      host: settings.host,
      port,
      maxConnections: 0,
      proxyProtocol: false,
      ...(usesTls(type) ? tlsFields : {}),
      ...(usesWebSocket(type) ? { path: settings.wsPath, allowedOrigins: [] } : {}),
      origin: n(key),
    })
  }

  // The top-level TLS and WebSocket keys: what needs them, and what they need.
  const tlsUsers = portKeys.filter(([, type, port]) => port !== undefined && usesTls(type)).map(([key]) => key)
  const wsUsers = portKeys.filter(([, type, port]) => port !== undefined && usesWebSocket(type)).map(([key]) => key)
  const userList = (keys: readonly string[]) => keys.map(n).join(' and ')
  const setWord = ctx.style === 'camel' ? 'given' : 'set'
  if (tlsUsers.length > 0) {
    for (const key of ['cert', 'key'] as const) {
      if (settings[key] !== undefined) continue
      const how = ctx.howToSet?.(key)
      problem(key, `required when ${userList(tlsUsers)} ${tlsUsers.length > 1 ? 'are' : 'is'} ${setWord}${how === undefined ? '' : ` (${how})`}`, tlsUsers[0])
    }
    if (settings.cafile === undefined) {
      for (const key of ['require_certificate', 'use_identity_as_username'] as const) {
        const on = key === 'require_certificate' ? settings.requireCertificate : settings.useIdentityAsUsername
        if (on) problem(key, `needs ${n('cafile')}: the CA certificates that client certificates are verified against`)
      }
    }
  } else {
    const unused = [
      ...(['cert', 'key', 'cafile'] as const).filter((k) => settings[k] !== undefined),
      ...(settings.requireCertificate ? ['require_certificate'] : []),
      ...(settings.useIdentityAsUsername ? ['use_identity_as_username'] : []),
    ]
    for (const key of unused) {
      problem(key, `${setWord}, but no listener uses it: it applies to the ${n('tls_port')} and ${n('wss_port')} listeners, and neither is ${setWord} (a ${n('listeners')} item names its own)`)
    }
  }
  if (wsUsers.length === 0 && settings.wsPath !== '/mqtt') {
    problem('ws_path', `${setWord}, but no listener uses it: it applies to the ${n('ws_port')} and ${n('wss_port')} listeners, and neither is ${setWord} (a ${n('listeners')} item names its own path)`)
  }

  for (const [index, item] of (settings.listeners ?? []).entries()) {
    const resolved: ResolvedListener = {
      type: item.type,
      host: item.host,
      port: item.port,
      maxConnections: item.max_connections,
      proxyProtocol: item.proxy_protocol,
      origin: n(`listeners[${index}]`),
    }
    if (usesTls(item.type)) {
      if (item.cert !== undefined) resolved.cert = item.cert
      if (item.key !== undefined) resolved.key = item.key
      if (item.cafile !== undefined) resolved.cafile = item.cafile
      resolved.requireCertificate = item.require_certificate ?? false
      resolved.useIdentityAsUsername = item.use_identity_as_username ?? false
    }
    if (usesWebSocket(item.type)) {
      resolved.path = item.path ?? '/mqtt'
      resolved.allowedOrigins = [...(item.allowed_origins ?? [])]
    }
    listeners.push(resolved)
  }

  if (listeners.length === 0) {
    problem('listeners', `the list is empty and none of ${['port', 'tls_port', 'ws_port', 'wss_port'].map(n).join(', ')} is ${setWord}: the broker would have no listener`)
  }

  // Two listeners on one address and port (port 0 is a fresh port each time).
  const originKey = (l: ResolvedListener) => (l.origin.startsWith(n('listeners')) ? `${l.origin}.port` : l.origin)
  const snakeOrigin = (l: ResolvedListener) => (ctx.style === 'camel' ? snakeFromCamel(originKey(l)) : originKey(l))
  for (const [j, later] of listeners.entries()) {
    if (later.port === 0) continue
    const earlier = listeners.slice(0, j).find((l) => l.port === later.port && hostsCollide(l.host, later.host))
    if (earlier === undefined) continue
    const wildcard = [earlier.host, later.host].find((h) => h === '0.0.0.0' || h === '::' || h === '::0' || h === '[::]')
    const same = earlier.host.toLowerCase() === later.host.toLowerCase()
    const why = same || wildcard === undefined ? '' : ` (${wildcard} covers every ${wildcard === '0.0.0.0' ? 'IPv4' : 'IPv6'} address)`
    problem(snakeOrigin(later), `${hostPort(later.host, later.port)} is already used by ${originKey(earlier)}, on ${hostPort(earlier.host, earlier.port)}${why}; give each listener its own port`)
  }

  // The certificate files: readable now (their contents are checked by the native core, which names the file too).
  if (ctx.checkFiles !== false) {
    const checked = new Set<string>()
    for (const l of listeners) {
      if (!usesTls(l.type)) continue
      const fromList = l.origin.startsWith(n('listeners'))
      for (const key of ['cert', 'key', 'cafile'] as const) {
        const file = l[key]
        if (file === undefined) continue
        const keyPath = fromList ? `${snakeFromCamelPath(ctx.style, l.origin)}.${key}` : key
        if (checked.has(keyPath)) continue
        checked.add(keyPath)
        const text = readProblem(file)
        if (text !== undefined) problem(keyPath, text)
      }
    }
  }
  return { listeners, issues }
}

function snakeFromCamelPath(style: KeyStyle, keyPath: string): string {
  return style === 'camel' ? snakeFromCamel(keyPath) : keyPath
}

/**
 * The listeners of `Broker.start` options: `settings` as `resolveBrokerSettings`
 * returned them, `portGiven` whether the `port` option was given (with a
 * `listeners` list, only then does it add a TCP listener). Throws a
 * `ConfigError` naming the option of every problem.
 */
export function resolveListeners(settings: BrokerSettings, portGiven: boolean): ResolvedListener[] {
  const { listeners, issues } = combineListeners(
    {
      host: settings.host,
      port: settings.port,
      portExplicit: portGiven,
      tlsPort: settings.tlsPort,
      wsPort: settings.wsPort,
      wssPort: settings.wssPort,
      cert: settings.cert,
      key: settings.key,
      cafile: settings.cafile,
      requireCertificate: settings.requireCertificate,
      useIdentityAsUsername: settings.useIdentityAsUsername,
      wsPath: settings.wsPath,
      listeners: settings.listeners?.map((l) => listenerConfigFromOptions(l, settings.host)),
    },
    { style: 'camel', sourceOf: () => ({ kind: 'options' }) },
  )
  if (issues.length > 0) throw new ConfigError(issues)
  return listeners
}
