/**
 * Where a configuration value came from. Every config error names one, so a
 * user can tell which of the file, the environment and the command line to fix.
 */
export type ConfigSource =
  | { readonly kind: 'file'; readonly path: string; readonly line?: number }
  | { readonly kind: 'env'; readonly variable: string }
  | { readonly kind: 'flag'; readonly flag: string }
  | { readonly kind: 'options' }
  | { readonly kind: 'default' }

/** One problem found while loading or validating configuration. */
export interface ConfigIssue {
  readonly source: ConfigSource
  /** The key as the user spelled it (snake_case in files, env and flags; camelCase in `Broker` options). */
  readonly key?: string
  /** What is wrong, e.g. `expected an integer between 0 and 65535, got "abc"`. */
  readonly problem: string
}

/** Human-readable name of a source: a file path (with `:line` when known), an env variable or a flag. */
export function describeSource(source: ConfigSource): string {
  switch (source.kind) {
    case 'file':
      return source.line === undefined ? source.path : `${source.path}:${source.line}`
    case 'env':
      return `environment variable ${source.variable}`
    case 'flag':
      return `command-line flag ${source.flag}`
    case 'options':
      return 'Broker options'
    case 'default':
      return 'built-in defaults'
  }
}

/** Formats one issue as `config error in <source>: key "<key>": <problem>`. */
export function formatIssue(issue: ConfigIssue): string {
  const key = issue.key === undefined ? '' : `key "${issue.key}": `
  return `config error in ${describeSource(issue.source)}: ${key}${issue.problem}`
}

/**
 * Thrown for any invalid configuration: unreadable or malformed file, unknown
 * key, value of the wrong type or out of range. The message has one line per
 * issue, each naming the source and the key; `issues` has them structured.
 */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[]

  constructor(issues: readonly ConfigIssue[]) {
    if (issues.length === 0) throw new TypeError('ConfigError needs at least one issue')
    super(issues.map(formatIssue).join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}
