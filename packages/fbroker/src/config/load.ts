import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml'
import { ConfigError, type ConfigIssue, type ConfigSource } from './errors'
import {
  CONFIG_KEYS,
  CONFIG_SCHEMA,
  camelCaseKey,
  checkValue,
  defaultConfig,
  envVarName,
  parseText,
  specFor,
  type BrokerSettings,
  type ConfigKey,
  type ConfigKeySpec,
  type ConfigValue,
  type FbrokerConfig,
} from './schema'
import { isPathSpec } from '../auth/plugins'
import { redisTargetProblem } from '../persistence/redisTarget'
import {
  checkListenerList,
  combineListeners,
  listenerOptionsFromConfig,
  withHost,
  type ListenerConfig,
  type ListenerItem,
  type ResolvedListener,
} from './listeners'
import { closestName, unknownKeyProblem } from './suggest'

/** Where the effective value of a key came from. */
export type ValueOrigin = 'default' | 'file' | 'env' | 'flag'

export interface LoadConfigOptions {
  /** Path of a YAML (`.yaml`, `.yml`; the primary format) or JSON (`.json`) config file. Relative paths are resolved against the current directory. */
  file?: string
  /** Environment to read `FBROKER_<KEY>` variables from. Defaults to `process.env`; pass `{}` to ignore the environment. */
  env?: Readonly<Record<string, string | undefined>>
  /**
   * Command-line flag values, by snake_case key (`{ port: '1884', log_level: 'debug' }`).
   * Strings are parsed by the key's type; `undefined` means "not given". For
   * a list key (`plugins`) the value is a list of entries (a repeated flag)
   * that is appended to the list from the other sources.
   */
  flags?: Readonly<Partial<Record<ConfigKey, string | number | boolean | readonly string[] | undefined>>>
}

/**
 * `Broker.start` options made from a loaded configuration: every key in
 * camelCase, except that `port` is undefined when the configuration has a
 * `listeners` list and does not set `port` (so `Broker.start` adds no TCP
 * listener on the default port, as the combining rule says).
 */
export type LoadedBrokerOptions = Omit<BrokerSettings, 'port'> & { port: number | undefined }

export interface LoadedConfig {
  /** The resolved, validated configuration (snake_case keys). Frozen. */
  readonly config: Readonly<FbrokerConfig>
  /** Where each key's value came from. */
  readonly origins: Readonly<Record<ConfigKey, ValueOrigin>>
  /** Absolute path of the config file that was read, if any. */
  readonly file?: string
  /** Non-fatal findings, e.g. an `FBROKER_*` variable that names no key. */
  readonly warnings: readonly string[]
  /**
   * Every listener the broker will open: the `listeners` list combined with
   * `port`, `tls_port`, `ws_port` and `wss_port` (docs/listeners.md).
   */
  readonly listeners: readonly ResolvedListener[]
  /** The configuration as camelCase `Broker.start` options (see `LoadedBrokerOptions` for `port`). */
  toBrokerOptions(): LoadedBrokerOptions
}

/**
 * Converts a snake_case configuration to camelCase `Broker` options, key by
 * key (`listeners` items too). Note that `port` is always set in the result:
 * with a `listeners` list, `Broker.start` then adds the TCP listener on
 * `port`; `LoadedConfig.toBrokerOptions()` leaves it out when it was not set.
 */
export function toBrokerOptions(config: Readonly<FbrokerConfig>): BrokerSettings {
  const out: Record<string, unknown> = {}
  for (const key of CONFIG_KEYS) {
    const value = config[key] as ConfigValue
    if (key === 'listeners') out.listeners = (value as ListenerConfig[] | undefined)?.map(listenerOptionsFromConfig)
    else out[camelCaseKey(key)] = Array.isArray(value) ? [...value] : value
  }
  return out as BrokerSettings
}

/** How to set a key, for a problem about a key that is missing: `--cert, FBROKER_CERT or cert in the config file`. */
function howToSet(key: string): string | undefined {
  const spec = specFor(key)
  if (spec === undefined) return undefined
  const ways = [...(spec.flag === undefined ? [] : [spec.flag]), envVarName(key), `${key} in the config file`]
  return `set it with ${ways.slice(0, -1).join(', ')} or ${ways[ways.length - 1]}`
}

/**
 * Loads the configuration: defaults, overridden by the file, overridden by
 * `FBROKER_<KEY>` environment variables, overridden by command-line flags.
 * Every layer is validated in full (even values a later layer overrides) and
 * all problems are reported together in one `ConfigError`.
 */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const config: Record<string, ConfigValue> = { ...defaultConfig() }
  const origins = Object.fromEntries(CONFIG_KEYS.map((k) => [k, 'default'])) as Record<ConfigKey, ValueOrigin>
  /** Where each key was set, for problems found after every layer is in (listeners). */
  const sources = new Map<string, (keyPath: string) => ConfigSource>()
  const issues: ConfigIssue[] = []
  const warnings: string[] = []
  /** The `listeners` items of the layer that set them last (hosts filled in at the end). */
  let listenerItems: ListenerItem[] | undefined

  const apply = (key: ConfigKey, value: ConfigValue, origin: ValueOrigin, sourceOf: (keyPath: string) => ConfigSource) => {
    config[key] = value
    origins[key] = origin
    sources.set(key, sourceOf)
  }
  /** A `listeners` value: validated item by item, every problem naming its key path. */
  const applyListeners = (value: unknown, origin: ValueOrigin, sourceOf: (keyPath: string) => ConfigSource, baseDir: string) => {
    if (value === null || value === undefined) return
    const checked = checkListenerList(value, { style: 'snake', sourceOf, baseDir })
    issues.push(...checked.issues)
    if (checked.issues.length > 0) return
    listenerItems = checked.items
    origins.listeners = origin
    sources.set('listeners', sourceOf)
  }

  // 1. File
  let file: string | undefined
  if (options.file !== undefined) {
    file = path.resolve(options.file)
    const parsed = readConfigFile(file, issues)
    if (parsed !== undefined) {
      const filePath = file
      const sourceOf = (keyPath: string): ConfigSource => ({ kind: 'file', path: filePath, line: lineOf(parsed.lines, keyPath) })
      for (const [key, value] of Object.entries(parsed.values)) {
        const source = sourceOf(key)
        const spec = specFor(key)
        if (spec === undefined) {
          issues.push({ source, key, problem: unknownKeyProblem(key, CONFIG_KEYS) })
          continue
        }
        if (spec.type === 'listener-list') {
          applyListeners(value, 'file', sourceOf, path.dirname(filePath))
          continue
        }
        const result = checkValue(spec, value)
        if (result.ok) apply(spec.key as ConfigKey, resolvePaths(spec, result.value, path.dirname(filePath)), 'file', sourceOf)
        else issues.push({ source, key, problem: result.problem })
      }
    }
  }

  // 2. Environment
  const env = options.env ?? process.env
  for (const spec of CONFIG_SCHEMA as readonly ConfigKeySpec[]) {
    const variable = envVarName(spec.key)
    const text = env[variable]
    if (text === undefined || text.trim() === '') continue
    const sourceOf = (): ConfigSource => ({ kind: 'env', variable })
    const result = parseText(spec, text)
    if (!result.ok) issues.push({ source: sourceOf(), key: spec.key, problem: result.problem })
    else if (spec.type === 'listener-list') applyListeners(result.value, 'env', sourceOf, process.cwd())
    else apply(spec.key as ConfigKey, resolvePaths(spec, result.value, process.cwd()), 'env', sourceOf)
  }
  // 3. Command-line flags
  for (const [key, value] of Object.entries(options.flags ?? {})) {
    if (value === undefined) continue
    const spec = specFor(key)
    const flag = spec?.flag ?? `--${key.replace(/_/g, '-')}`
    const source: ConfigSource = { kind: 'flag', flag }
    const sourceOf = () => source
    if (spec === undefined) {
      issues.push({ source, key, problem: unknownKeyProblem(key, CONFIG_KEYS) })
      continue
    }
    if (spec.type === 'listener-list') {
      // No command-line flag sets it; a caller may pass the list, or its JSON text.
      const result = typeof value === 'string' ? parseText(spec, value) : checkValue(spec, value)
      if (result.ok) applyListeners(result.value, 'flag', sourceOf, process.cwd())
      else issues.push({ source, key, problem: result.problem })
      continue
    }
    if (spec.type === 'module-list') {
      // A repeated flag: its entries are appended to the list of the file and the environment.
      const entries = typeof value === 'string' ? [value] : value
      const result = checkValue(spec, entries)
      if (!result.ok) {
        issues.push({ source, key, problem: result.problem })
        continue
      }
      const added = resolvePaths(spec, result.value, process.cwd()) as string[]
      if (added.length > 0) apply(spec.key as ConfigKey, [...(config[spec.key] as string[]), ...added], 'flag', sourceOf)
      continue
    }
    const result = typeof value === 'string' ? parseText(spec, value) : checkValue(spec, value)
    if (result.ok) apply(spec.key as ConfigKey, resolvePaths(spec, result.value, process.cwd()), 'flag', sourceOf)
    else issues.push({ source, key, problem: result.problem })
  }

  if (issues.length > 0) throw new ConfigError(issues)

  // 4. Listeners: items without a host take the final top-level one; then the combining rule.
  if (listenerItems !== undefined) config.listeners = withHost(listenerItems, config.host as string)
  const combined = combineListeners(
    {
      host: config.host as string,
      port: config.port as number,
      portExplicit: origins.port !== 'default',
      tlsPort: config.tls_port as number | undefined,
      wsPort: config.ws_port as number | undefined,
      wssPort: config.wss_port as number | undefined,
      cert: config.cert as string | undefined,
      key: config.key as string | undefined,
      cafile: config.cafile as string | undefined,
      requireCertificate: config.require_certificate as boolean,
      useIdentityAsUsername: config.use_identity_as_username as boolean,
      wsPath: config.ws_path as string,
      listeners: config.listeners as ListenerConfig[] | undefined,
    },
    {
      style: 'snake',
      sourceOf: (keyPath) => {
        const top = /^[a-z_]+/.exec(keyPath)?.[0] ?? keyPath
        return sources.get(top)?.(keyPath) ?? { kind: 'default' }
      },
      howToSet,
    },
  )
  if (combined.issues.length > 0) throw new ConfigError(combined.issues)

  // 5. Which Redis `persistence: redis` writes to: one way of naming it, and at least one.
  if (config.persistence === 'redis') {
    const problem = redisTargetProblem({
      redisUrl: config.redis_url as string | undefined,
      redisSentinels: config.redis_sentinels as string[],
      redisSentinelName: config.redis_sentinel_name as string,
      redisClusterNodes: config.redis_cluster_nodes as string[],
    })
    if (problem !== undefined) {
      const source = sources.get(problem.key)?.(problem.key) ?? sources.get('persistence')?.('persistence') ?? { kind: 'default' as const }
      throw new ConfigError([{ source, key: problem.key, problem: problem.problem }])
    }
  }

  // Unknown FBROKER_* variables: probably typos, unless a plugin reads its own (FBROKER_JWT_SECRET).
  const knownVariables = CONFIG_KEYS.map(envVarName)
  const withPlugins = (config.plugins as string[]).length > 0
  for (const variable of Object.keys(env)) {
    if (!variable.startsWith('FBROKER_') || knownVariables.includes(variable)) continue
    const suggestion = closestName(variable, knownVariables, (n) => n.toUpperCase().replace(/-/g, '_'))
    const what = withPlugins ? 'is not a fbroker setting (a plugin may read it)' : 'is not a fbroker setting and is ignored'
    warnings.push(`environment variable ${variable} ${what}` + (suggestion === undefined ? '' : `; did you mean ${suggestion}?`))
  }

  for (const value of Object.values(config)) if (Array.isArray(value)) deepFreeze(value)
  const resolved = Object.freeze(config as FbrokerConfig)
  const implicitPortDropped = resolved.listeners !== undefined && origins.port === 'default'
  const loaded: LoadedConfig = {
    config: resolved,
    origins: Object.freeze(origins),
    warnings: Object.freeze(warnings),
    listeners: deepFreeze(combined.listeners),
    toBrokerOptions: () => ({ ...toBrokerOptions(resolved), ...(implicitPortDropped ? { port: undefined } : {}) }),
    ...(file === undefined ? {} : { file }),
  }
  return loaded
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

/** The line of a key path (`listeners[2].cert`) in a YAML file, or of its nearest parent that has one. */
function lineOf(lines: ReadonlyMap<string, number>, keyPath: string): number | undefined {
  let at = keyPath
  for (;;) {
    const line = lines.get(at)
    if (line !== undefined) return line
    const cut = Math.max(at.lastIndexOf('.'), at.lastIndexOf('['))
    if (cut <= 0) return undefined
    at = at.slice(0, cut)
  }
}

/**
 * Makes the file paths of a value absolute: a `path` key's value, and the
 * path entries of a module list, relative to `baseDir` (the config file's
 * directory, or the current directory for the environment and flags). A
 * package name in a config file's module list is resolved from the file's
 * directory when it can be; otherwise it is kept, to be resolved (and
 * reported) when the plugins are loaded.
 */
function resolvePaths(spec: ConfigKeySpec, value: ConfigValue, baseDir: string): ConfigValue {
  if (value === undefined) return value
  if (spec.type === 'path' && typeof value === 'string') return path.resolve(baseDir, value)
  if (spec.type === 'module-list' && Array.isArray(value)) {
    return (value as string[]).map((entry) => {
      if (isPathSpec(entry)) return path.resolve(baseDir, entry)
      if (baseDir === process.cwd()) return entry
      try {
        return require.resolve(entry, { paths: [baseDir] })
      } catch {
        return entry
      }
    })
  }
  return value
}

interface ParsedFile {
  values: Record<string, unknown>
  /** 1-based line of each key, by path: `port`, `listeners[2]`, `listeners[2].cert` (YAML only). */
  lines: Map<string, number>
}

function readConfigFile(file: string, issues: ConfigIssue[]): ParsedFile | undefined {
  const fileSource: ConfigSource = { kind: 'file', path: file }
  const ext = path.extname(file).toLowerCase()
  if (ext !== '.yaml' && ext !== '.yml' && ext !== '.json') {
    issues.push({
      source: fileSource,
      problem: `unsupported config file type "${ext || '(no extension)'}": use .yaml or .yml (YAML) or .json (JSON)`,
    })
    return undefined
  }

  let text: string
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '')
  } catch (err) {
    issues.push({ source: fileSource, problem: describeReadError(err) })
    return undefined
  }

  const parsed = ext === '.json' ? parseJson(file, text, issues) : parseYaml(file, text, issues)
  if (parsed === undefined) return undefined
  if (parsed.values === null || parsed.values === undefined) return { values: {}, lines: parsed.lines }
  if (typeof parsed.values !== 'object' || Array.isArray(parsed.values)) {
    const got = Array.isArray(parsed.values) ? 'a list' : `${typeof parsed.values} ${JSON.stringify(parsed.values)}`
    issues.push({ source: fileSource, problem: `expected a mapping of config keys at the top level, got ${got}` })
    return undefined
  }
  return { values: parsed.values as Record<string, unknown>, lines: parsed.lines }
}

function describeReadError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'ENOENT':
      return 'config file not found'
    case 'EACCES':
    case 'EPERM':
      return 'config file is not readable (permission denied)'
    case 'EISDIR':
      return 'config path is a directory, not a file'
    default:
      return `cannot read config file: ${err instanceof Error ? err.message : String(err)}`
  }
}

function parseYaml(file: string, text: string, issues: ConfigIssue[]): { values: unknown; lines: Map<string, number> } | undefined {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const first = doc.errors[0]
    const pos = lineCounter.linePos(first.pos[0])
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more)` : ''
    issues.push({
      source: { kind: 'file', path: file, line: pos.line },
      problem: `YAML syntax error at column ${pos.col}: ${first.message}${more}`,
    })
    return undefined
  }
  const lines = new Map<string, number>()
  const walk = (node: unknown, at: string) => {
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue
        const keyPath = at === '' ? String(pair.key.value) : `${at}.${String(pair.key.value)}`
        if (pair.key.range) lines.set(keyPath, lineCounter.linePos(pair.key.range[0]).line)
        walk(pair.value, keyPath)
      }
    } else if (isSeq(node)) {
      for (const [index, item] of node.items.entries()) {
        const keyPath = `${at}[${index}]`
        const range = (item as YamlNode | null)?.range
        if (range) lines.set(keyPath, lineCounter.linePos(range[0]).line)
        walk(item, keyPath)
      }
    }
  }
  walk(doc.contents, '')
  try {
    return { values: doc.toJS({ maxAliasCount: 100 }), lines }
  } catch (err) {
    issues.push({ source: { kind: 'file', path: file }, problem: `invalid YAML: ${err instanceof Error ? err.message : String(err)}` })
    return undefined
  }
}

function parseJson(file: string, text: string, issues: ConfigIssue[]): { values: unknown; lines: Map<string, number> } | undefined {
  try {
    return { values: JSON.parse(text), lines: new Map() }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    const position = /at position (\d+)/.exec(message)
    const line = position === null ? undefined : text.slice(0, Number(position[1])).split('\n').length
    issues.push({ source: { kind: 'file', path: file, line }, problem: `JSON syntax error: ${message}` })
    return undefined
  }
}

/**
 * Validates camelCase `Broker.start` options (typed values, no string parsing)
 * and fills in defaults. Unknown options are errors.
 */
export function resolveBrokerSettings(options: Readonly<Record<string, unknown>>, ignore: readonly string[] = []): BrokerSettings {
  const settings: Record<string, unknown> = { ...toBrokerOptions(defaultConfig()) }
  const issues: ConfigIssue[] = []
  const optionNames = CONFIG_KEYS.map(camelCaseKey)
  let listenerItems: ListenerItem[] | undefined
  for (const [name, value] of Object.entries(options)) {
    if (ignore.includes(name)) continue
    const index = optionNames.indexOf(name)
    if (index === -1) {
      issues.push({ source: { kind: 'options' }, key: name, problem: unknownKeyProblem(name, [...optionNames, ...ignore], 'option') })
      continue
    }
    if (value === undefined) continue
    const spec = specFor(CONFIG_KEYS[index])!
    if (spec.type === 'listener-list') {
      if (value === null) continue
      const checked = checkListenerList(value, { style: 'camel', sourceOf: () => ({ kind: 'options' }), baseDir: process.cwd() })
      issues.push(...checked.issues)
      listenerItems = checked.items
      continue
    }
    const result = checkValue(spec, value)
    if (result.ok) settings[name] = resolveOptionPath(spec, result.value)
    else issues.push({ source: { kind: 'options' }, key: name, problem: result.problem })
  }
  if (issues.length > 0) throw new ConfigError(issues)
  if (listenerItems !== undefined) settings.listeners = withHost(listenerItems, settings.host as string).map(listenerOptionsFromConfig)
  return settings as BrokerSettings
}

/** The certificate paths of `Broker.start` options are made absolute (relative to the current directory) so a SIGHUP reload reads the same files. */
function resolveOptionPath(spec: ConfigKeySpec, value: ConfigValue): ConfigValue {
  if (typeof value === 'string' && spec.type === 'path' && (spec.key === 'cert' || spec.key === 'key' || spec.key === 'cafile')) {
    return path.resolve(value)
  }
  return value
}
