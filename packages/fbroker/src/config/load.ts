import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml'
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

export interface LoadedConfig {
  /** The resolved, validated configuration (snake_case keys). Frozen. */
  readonly config: Readonly<FbrokerConfig>
  /** Where each key's value came from. */
  readonly origins: Readonly<Record<ConfigKey, ValueOrigin>>
  /** Absolute path of the config file that was read, if any. */
  readonly file?: string
  /** Non-fatal findings, e.g. an `FBROKER_*` variable that names no key. */
  readonly warnings: readonly string[]
  /** The configuration as camelCase `Broker.start` options. */
  toBrokerOptions(): BrokerSettings
}

/** Converts a snake_case configuration to camelCase `Broker` options. */
export function toBrokerOptions(config: Readonly<FbrokerConfig>): BrokerSettings {
  const out: Record<string, unknown> = {}
  for (const key of CONFIG_KEYS) {
    const value = config[key] as ConfigValue
    out[camelCaseKey(key)] = Array.isArray(value) ? [...value] : value
  }
  return out as BrokerSettings
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
  const issues: ConfigIssue[] = []
  const warnings: string[] = []

  const apply = (key: ConfigKey, value: ConfigValue, origin: ValueOrigin) => {
    config[key] = value
    origins[key] = origin
  }

  // 1. File
  let file: string | undefined
  if (options.file !== undefined) {
    file = path.resolve(options.file)
    const parsed = readConfigFile(file, issues)
    if (parsed !== undefined) {
      for (const [key, value] of Object.entries(parsed.values)) {
        const source: ConfigSource = { kind: 'file', path: file, line: parsed.lines.get(key) }
        const spec = specFor(key)
        if (spec === undefined) {
          issues.push({ source, key, problem: unknownKeyProblem(key, CONFIG_KEYS) })
          continue
        }
        const result = checkValue(spec, value)
        if (result.ok) apply(spec.key as ConfigKey, resolvePaths(spec, result.value, path.dirname(file)), 'file')
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
    const result = parseText(spec, text)
    if (result.ok) apply(spec.key as ConfigKey, resolvePaths(spec, result.value, process.cwd()), 'env')
    else issues.push({ source: { kind: 'env', variable }, key: spec.key, problem: result.problem })
  }
  // 3. Command-line flags
  for (const [key, value] of Object.entries(options.flags ?? {})) {
    if (value === undefined) continue
    const spec = specFor(key)
    const flag = spec?.flag ?? `--${key.replace(/_/g, '-')}`
    const source: ConfigSource = { kind: 'flag', flag }
    if (spec === undefined) {
      issues.push({ source, key, problem: unknownKeyProblem(key, CONFIG_KEYS) })
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
      if (added.length > 0) apply(spec.key as ConfigKey, [...(config[spec.key] as string[]), ...added], 'flag')
      continue
    }
    const result = typeof value === 'string' ? parseText(spec, value) : checkValue(spec, value)
    if (result.ok) apply(spec.key as ConfigKey, resolvePaths(spec, result.value, process.cwd()), 'flag')
    else issues.push({ source, key, problem: result.problem })
  }

  if (issues.length > 0) throw new ConfigError(issues)

  // Unknown FBROKER_* variables: probably typos, unless a plugin reads its own (FBROKER_JWT_SECRET).
  const knownVariables = CONFIG_KEYS.map(envVarName)
  const withPlugins = (config.plugins as string[]).length > 0
  for (const variable of Object.keys(env)) {
    if (!variable.startsWith('FBROKER_') || knownVariables.includes(variable)) continue
    const suggestion = closestName(variable, knownVariables, (n) => n.toUpperCase().replace(/-/g, '_'))
    const what = withPlugins ? 'is not a fbroker setting (a plugin may read it)' : 'is not a fbroker setting and is ignored'
    warnings.push(`environment variable ${variable} ${what}` + (suggestion === undefined ? '' : `; did you mean ${suggestion}?`))
  }

  for (const value of Object.values(config)) if (Array.isArray(value)) Object.freeze(value)
  const resolved = Object.freeze(config as FbrokerConfig)
  const loaded: LoadedConfig = {
    config: resolved,
    origins: Object.freeze(origins),
    warnings: Object.freeze(warnings),
    toBrokerOptions: () => toBrokerOptions(resolved),
    ...(file === undefined ? {} : { file }),
  }
  return loaded
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
    return value.map((entry) => {
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
  /** 1-based line of each top-level key (YAML only). */
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
  if (isMap(doc.contents)) {
    for (const pair of doc.contents.items) {
      if (isScalar(pair.key) && pair.key.range) lines.set(String(pair.key.value), lineCounter.linePos(pair.key.range[0]).line)
    }
  }
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
  for (const [name, value] of Object.entries(options)) {
    if (ignore.includes(name)) continue
    const index = optionNames.indexOf(name)
    if (index === -1) {
      issues.push({ source: { kind: 'options' }, key: name, problem: unknownKeyProblem(name, [...optionNames, ...ignore], 'option') })
      continue
    }
    if (value === undefined) continue
    const spec = specFor(CONFIG_KEYS[index])!
    const result = checkValue(spec, value)
    if (result.ok) settings[name] = result.value
    else issues.push({ source: { kind: 'options' }, key: name, problem: result.problem })
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return settings as BrokerSettings
}
