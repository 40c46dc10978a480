/**
 * The broker's password file and ACL file: read from disk, validated by the
 * native parser (the one that enforces them), and summarised for the logs.
 * The files themselves are checked in the native core; nothing here decides
 * who may connect.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, type ConfigIssue } from '../config/errors'
import type { NativeBinding } from '../native'

/** Where the two files are (absolute or relative to the current directory); undefined = not configured. */
export interface AuthFilePaths {
  readonly passwordFile?: string | undefined
  readonly aclFile?: string | undefined
}

/** The contents of the configured files, validated, with what the logs say about them. */
export interface LoadedAuthFiles {
  readonly passwordText?: string
  readonly aclText?: string
  /** Distinct user names in the password file. */
  readonly users: number
  /** `topic` and `pattern` lines of the ACL file. */
  readonly aclRules: number
  /** The native parser's warnings (legacy hashes, duplicate users, placeholders in `topic` lines). */
  readonly warnings: readonly string[]
}

type FileKey = 'password_file' | 'acl_file'

function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'ENOENT':
      return 'file not found'
    case 'EACCES':
    case 'EPERM':
      return 'file is not readable (permission denied)'
    case 'EISDIR':
      return 'the path is a directory, not a file'
    default:
      return `cannot read the file: ${err instanceof Error ? err.message : String(err)}`
  }
}

async function readText(key: FileKey, file: string, issues: ConfigIssue[]): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).replace(/^\uFEFF/, '')
  } catch (err) {
    issues.push({ source: { kind: 'file', path: file }, key, problem: readProblem(err) })
    return undefined
  }
}

/**
 * Turns a native parse error ("password file line 3: …", "ACL file line 7: …")
 * into an issue that names the key, the file and the line.
 */
function parseIssue(key: FileKey, file: string, err: unknown): ConfigIssue {
  const message = err instanceof Error ? err.message : String(err)
  const match = /^(?:password file|ACL file) line (\d+): ([\s\S]*)$/.exec(message)
  if (match === null) return { source: { kind: 'file', path: file }, key, problem: message }
  return { source: { kind: 'file', path: file, line: Number(match[1]) }, key, problem: match[2]! }
}

/** "password file: password file line 3: …" (the binding prefixes what the parser already says) → "password file line 3: …". */
function cleanWarning(warning: string): string {
  return warning.replace(/^password file: (?=password file)/, '').replace(/^ACL file: (?=ACL file)/, '')
}

/** Distinct user names of a (valid) password file: what precedes the first `:` of each entry line. */
export function countPasswordFileUsers(text: string): number {
  const users = new Set<string>()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon > 0) users.add(line.slice(0, colon))
  }
  return users.size
}

/** `topic` and `pattern` lines of a (valid) ACL file. */
export function countAclRules(text: string): number {
  let rules = 0
  for (const raw of text.split('\n')) {
    const word = raw.trim().split(/\s+/, 1)[0]
    if (word === 'topic' || word === 'pattern') rules++
  }
  return rules
}

/**
 * Reads and validates the configured files. Throws a `ConfigError` naming
 * the key (`password_file`, `acl_file`), the file and, for a malformed
 * entry, the line. Both files are checked, and every problem is reported.
 */
export async function loadAuthFiles(binding: NativeBinding, paths: AuthFilePaths): Promise<LoadedAuthFiles> {
  const issues: ConfigIssue[] = []
  const warnings: string[] = []
  let passwordText: string | undefined
  let aclText: string | undefined
  if (paths.passwordFile !== undefined) {
    passwordText = await readText('password_file', paths.passwordFile, issues)
    if (passwordText !== undefined) {
      try {
        warnings.push(...binding.checkAuthFiles(passwordText, null).map(cleanWarning))
      } catch (err) {
        issues.push(parseIssue('password_file', paths.passwordFile, err))
      }
    }
  }
  if (paths.aclFile !== undefined) {
    aclText = await readText('acl_file', paths.aclFile, issues)
    if (aclText !== undefined) {
      try {
        warnings.push(...binding.checkAuthFiles(null, aclText).map(cleanWarning))
      } catch (err) {
        issues.push(parseIssue('acl_file', paths.aclFile, err))
      }
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return {
    ...(passwordText === undefined ? {} : { passwordText }),
    ...(aclText === undefined ? {} : { aclText }),
    users: passwordText === undefined ? 0 : countPasswordFileUsers(passwordText),
    aclRules: aclText === undefined ? 0 : countAclRules(aclText),
    warnings,
  }
}

/** Whether a warning is the (once per process) deprecation notice for unsalted SHA-256 entries. */
export function isLegacyHashWarning(warning: string): boolean {
  return /deprecated unsalted SHA-256/.test(warning)
}
