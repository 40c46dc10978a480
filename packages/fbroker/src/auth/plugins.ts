/**
 * Loading and validating plugins: from files (ES modules or CommonJS) or as
 * ready-made objects.
 */
import { existsSync, readFileSync } from 'node:fs'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { HOOK_NAMES, type Plugin, type RegisteredHooks } from './types'

/** A plugin module could not be loaded, or its default export is not a valid plugin. */
export class PluginLoadError extends Error {
  /** What was asked for: the path as written, or `plugins[i]` for an object. */
  readonly spec: string
  /** The absolute file, when the spec was a path. */
  readonly file?: string

  constructor(spec: string, file: string | undefined, problem: string, cause?: unknown) {
    const where = file === undefined || file === spec ? spec : `${spec} (${file})`
    super(`plugin ${where}: ${problem}`, cause === undefined ? undefined : { cause })
    this.name = 'PluginLoadError'
    this.spec = spec
    if (file !== undefined) this.file = file
  }
}

/** A plugin spec: a module path (relative to the base directory), a package name, or a plugin object. */
export type PluginSpec = string | Plugin

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object') return 'an object'
  return typeof value === 'string' ? `the string ${JSON.stringify(value)}` : `${typeof value} ${String(value)}`
}

/**
 * Checks that `value` is a plugin: an object with a non-empty string `name`
 * whose hooks, when present, are functions. Returns the problem, or undefined.
 */
export function pluginProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return `the default export must be an object { name, ...hooks }, got ${describe(value)}`
  }
  const name = (value as { name?: unknown }).name
  if (typeof name !== 'string' || name.trim() === '') {
    return `the default export must have a non-empty string "name", got ${name === undefined ? 'none' : describe(name)}`
  }
  for (const hook of [...HOOK_NAMES, 'close'] as const) {
    const fn = (value as Record<string, unknown>)[hook]
    if (fn !== undefined && fn !== null && typeof fn !== 'function') {
      return `"${hook}" must be a function, got ${describe(fn)}`
    }
  }
  return undefined
}

/** The package "type" governing a .js file: the nearest package.json's, default commonjs. */
function packageType(file: string): 'module' | 'commonjs' {
  let dir = path.dirname(file)
  for (;;) {
    const pkg = path.join(dir, 'package.json')
    if (existsSync(pkg)) {
      try {
        const type = (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: unknown }).type
        return type === 'module' ? 'module' : 'commonjs'
      } catch {
        return 'commonjs'
      }
    }
    const parent = path.dirname(dir)
    if (parent === dir) return 'commonjs'
    dir = parent
  }
}

/** Whether a plugin spec is a file path (as opposed to a package name). */
export function isPathSpec(spec: string): boolean {
  return path.isAbsolute(spec) || spec.startsWith('./') || spec.startsWith('../') || spec === '.' || spec === '..' ||
    spec.startsWith('.\\') || spec.startsWith('..\\') || /\.(mjs|cjs|js)$/.test(spec)
}

/** Takes the default export out of a CommonJS `module.exports` or an ES module namespace. */
function defaultExport(loaded: unknown, viaImport: boolean): unknown {
  let value: unknown = loaded
  if (viaImport) {
    const ns = loaded as { default?: unknown }
    if (!('default' in (ns as object))) return undefined
    value = ns.default
  }
  // A transpiled ES module (exports.__esModule + exports.default), loaded either way.
  if (value !== null && typeof value === 'object' && (value as { __esModule?: unknown }).__esModule === true && 'default' in value) {
    value = (value as { default: unknown }).default
  }
  return value
}

async function loadFile(spec: string, baseDir: string): Promise<Plugin> {
  let file: string
  if (isPathSpec(spec)) {
    file = path.resolve(baseDir, spec)
    if (!existsSync(file)) throw new PluginLoadError(spec, file, 'file not found')
  } else {
    try {
      file = require.resolve(spec, { paths: [baseDir] })
    } catch (err) {
      throw new PluginLoadError(spec, undefined, `cannot find module "${spec}" from ${baseDir}`, err)
    }
  }

  const ext = path.extname(file).toLowerCase()
  const viaImport = ext === '.mjs' || (ext !== '.cjs' && packageType(file) === 'module')
  let loaded: unknown
  try {
    loaded = viaImport ? await import(pathToFileURL(file).href) : require(file)
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    throw new PluginLoadError(spec, file, `failed to load: ${message}`, err)
  }
  const plugin = defaultExport(loaded, viaImport)
  if (plugin === undefined) {
    const names = loaded !== null && typeof loaded === 'object' ? Object.keys(loaded) : []
    const hint = names.length > 0 ? ` (it exports ${names.map((n) => `"${n}"`).join(', ')}; use \`export default\`)` : ''
    throw new PluginLoadError(spec, file, `has no default export${hint}`)
  }
  const problem = pluginProblem(plugin)
  if (problem !== undefined) throw new PluginLoadError(spec, file, problem)
  return plugin as Plugin
}

/**
 * Loads plugins in order. A string is a module: a path relative to `baseDir`
 * (the config file's directory, or the current directory for `--plugin` and
 * `Broker.start`) or a package name resolved from `baseDir`. `.mjs` files and
 * `.js` files in a `"type": "module"` package are loaded with `import()`;
 * `.cjs` and other `.js` files with `require`. The module's default export
 * (`export default`, or `module.exports` for CommonJS) is the plugin. Objects
 * are validated and used as they are.
 *
 * Rejects with a `PluginLoadError` naming the file when a module cannot be
 * loaded or does not export a valid plugin, or when two plugins share a name.
 */
export async function loadPlugins(specs: readonly PluginSpec[], baseDir: string = process.cwd()): Promise<Plugin[]> {
  const plugins: Plugin[] = []
  const seen = new Map<string, string>()
  for (const [i, spec] of specs.entries()) {
    let plugin: Plugin
    let label: string
    if (typeof spec === 'string') {
      plugin = await loadFile(spec, baseDir)
      label = spec
    } else {
      label = `plugins[${i}]`
      const problem = pluginProblem(spec)
      if (problem !== undefined) throw new PluginLoadError(label, undefined, problem.replace('the default export', 'the plugin'))
      plugin = spec
    }
    const previous = seen.get(plugin.name)
    if (previous !== undefined) {
      throw new PluginLoadError(label, undefined, `name "${plugin.name}" is already used by plugin ${previous}`)
    }
    seen.set(plugin.name, label)
    plugins.push(plugin)
  }
  return plugins
}

/**
 * Which hooks at least one plugin registers. Only these cross into
 * JavaScript: with no `authorizePublish` hook, messages never leave the
 * native core.
 */
export function registeredHooks(plugins: readonly Plugin[]): RegisteredHooks {
  const hooks = {} as RegisteredHooks
  for (const name of HOOK_NAMES) hooks[name] = plugins.some((p) => typeof p[name] === 'function')
  return hooks
}
