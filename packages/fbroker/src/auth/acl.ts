/**
 * Per-user access control lists, as stored by the built-in credential
 * sources: a JSON array of `{ "access": "read" | "write" | "readwrite" | "deny", "topic": "<filter>" }`.
 *
 * - Publishing to a topic needs a `write` or `readwrite` entry whose filter
 *   matches the topic.
 * - Subscribing to a filter needs a `read` or `readwrite` entry whose filter
 *   covers every topic the subscription can match (`users/a/#` covers
 *   `users/a/+/temp`; `users/+/temp` does not cover `users/#`).
 * - A `deny` entry wins: a publish to a topic it matches, or a subscription
 *   that could receive any topic it matches, is refused.
 * - Nothing matching → refused. A user with no ACL at all is not restricted
 *   by this module (the source gives no answer).
 */
import type { AclEntry } from './types'

export const ACL_ACCESS = ['read', 'write', 'readwrite', 'deny'] as const

/** A list that failed validation: every topic is refused for its user. */
export class AclError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AclError'
  }
}

function validFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false
  const levels = filter.split('/')
  for (const [i, level] of levels.entries()) {
    if (level === '#') {
      if (i !== levels.length - 1) return false
    } else if (level !== '+' && (level.includes('#') || level.includes('+'))) {
      return false
    }
  }
  return true
}

/**
 * Validates an ACL given as parsed JSON (or a JSON string). Throws an
 * `AclError` describing the first bad entry.
 */
export function parseAcl(value: unknown): AclEntry[] {
  let list = value
  if (typeof value === 'string') {
    try {
      list = JSON.parse(value)
    } catch (err) {
      throw new AclError(`acl is not valid JSON: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  if (!Array.isArray(list)) throw new AclError('acl must be a JSON array of { "access", "topic" } objects')
  return list.map((entry: unknown, i) => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new AclError(`acl[${i}] must be an object`)
    const { access, topic } = entry as { access?: unknown; topic?: unknown }
    if (typeof access !== 'string' || !(ACL_ACCESS as readonly string[]).includes(access)) {
      throw new AclError(`acl[${i}].access must be one of ${ACL_ACCESS.map((a) => `"${a}"`).join(', ')}, got ${JSON.stringify(access)}`)
    }
    if (typeof topic !== 'string' || !validFilter(topic)) {
      throw new AclError(`acl[${i}].topic must be a valid topic filter, got ${JSON.stringify(topic)}`)
    }
    return { access: access as AclEntry['access'], topic }
  })
}

/** Whether the topic filter `filter` matches the topic name `topic` (MQTT rules, including `$` topics). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}

/** Whether every topic matched by filter `inner` is also matched by filter `outer`. */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/')
  const n = inner.split('/')
  // "+" and "#" as the first level do not match topics that start with "$".
  if ((o[0] === '+' || o[0] === '#') && inner.startsWith('$')) return false
  for (let i = 0; i < o.length; i++) {
    const level = o[i]!
    if (level === '#') return true
    if (i >= n.length) return false
    const sub = n[i]!
    if (sub === '#') return false
    if (level === '+') continue
    if (sub === '+' || sub !== level) return false
  }
  // Equal lengths; a longer inner filter would need a trailing "#" in outer (handled above).
  return n.length === o.length
}

/** Whether some topic is matched by both filters. */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/')
  const y = b.split('/')
  // A wildcard first level matches no "$" topic, so it shares none with a filter starting with "$".
  if (((x[0] === '+' || x[0] === '#') && b.startsWith('$')) || ((y[0] === '+' || y[0] === '#') && a.startsWith('$'))) return false
  for (let i = 0; ; i++) {
    const p = x[i]
    const q = y[i]
    if (p === '#' || q === '#') return true
    if (p === undefined || q === undefined) return p === q
    if (p !== '+' && q !== '+' && p !== q) return false
  }
}

function grants(entry: AclEntry, want: 'read' | 'write'): boolean {
  return entry.access === want || entry.access === 'readwrite'
}

/** Whether the ACL lets its user publish to `topic`. */
export function aclAllowsPublish(acl: readonly AclEntry[], topic: string): boolean {
  let allowed = false
  for (const entry of acl) {
    if (!topicMatches(entry.topic, topic)) continue
    if (entry.access === 'deny') return false
    if (grants(entry, 'write')) allowed = true
  }
  return allowed
}

/** Whether the ACL lets its user subscribe to `filter`. */
export function aclAllowsSubscribe(acl: readonly AclEntry[], filter: string): boolean {
  let allowed = false
  for (const entry of acl) {
    if (entry.access === 'deny') {
      if (filtersIntersect(entry.topic, filter)) return false
    } else if (grants(entry, 'read') && filterCovers(entry.topic, filter)) {
      allowed = true
    }
  }
  return allowed
}
