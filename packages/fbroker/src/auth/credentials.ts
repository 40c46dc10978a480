/**
 * What the built-in credential sources (password file, static users, Redis)
 * share: a user record (password hash and optional ACL) and the three hooks
 * that answer from it.
 */
import { AclError, aclAllowsPublish, aclAllowsSubscribe, parseAcl } from './acl'
import { parsePasswordHash, verifyPassword, type ParsedPasswordHash } from './passwordHash'
import type { AclEntry, AuthLogger, MaybePromise, Plugin } from './types'

/** One user of a credential source, validated. */
export interface CredentialRecord {
  /** The parsed password hash; undefined when the user has none or it is in no supported format (login refused). */
  readonly hash: ParsedPasswordHash | undefined
  /** The ACL; undefined when the user has none (the source does not restrict them); an `AclError` when it is invalid (everything refused). */
  readonly acl: readonly AclEntry[] | AclError | undefined
}

/**
 * Builds a record from the stored strings, logging (not throwing) problems:
 * a bad hash refuses the login, a bad ACL refuses every topic.
 */
export function toCredentialRecord(
  source: string,
  username: string,
  passwordHash: string | null | undefined,
  acl: unknown,
  logger: AuthLogger | undefined,
): CredentialRecord {
  let hash: ParsedPasswordHash | undefined
  if (passwordHash !== undefined && passwordHash !== null) {
    hash = parsePasswordHash(passwordHash)
    if (hash === undefined) {
      logger?.error({ source, username }, `${source}: user "${username}" has a password in no supported format ($7$, $6$ or SHA-256 hex); login refused`)
    }
  }
  let parsedAcl: readonly AclEntry[] | AclError | undefined
  if (acl !== undefined && acl !== null) {
    try {
      parsedAcl = parseAcl(acl)
    } catch (err) {
      parsedAcl = err instanceof AclError ? err : new AclError(String(err))
      logger?.error({ source, username }, `${source}: user "${username}": ${parsedAcl.message}; every topic refused`)
    }
  }
  return { hash, acl: parsedAcl }
}

/** Looks up a user: the record, or undefined for an unknown user. May reject (the chain then denies). */
export type CredentialLookup = (username: string) => MaybePromise<CredentialRecord | undefined>

/**
 * The hooks of a credential source:
 * - `authenticate`: no answer without a user name (anonymous clients are left
 *   to `allow_anonymous`); `false` for an unknown user, a user without a valid
 *   hash, a missing password or a wrong one; `true` when the password matches.
 * - `authorizeSubscribe` / `authorizePublish`: no answer for anonymous
 *   clients and for users without an ACL; otherwise the ACL decides.
 */
export function credentialHooks(lookup: CredentialLookup): Required<Pick<Plugin, 'authenticate' | 'authorizeSubscribe' | 'authorizePublish'>> {
  return {
    async authenticate(_client, username, password) {
      if (username === undefined) return undefined
      const record = await lookup(username)
      if (record === undefined || record.hash === undefined || password === undefined) return false
      return verifyPassword(password, record.hash)
    },
    authorizeSubscribe(client, subscription) {
      if (client.username === undefined) return undefined
      return withRecord(lookup(client.username), (record) => {
        if (record === undefined || record.acl === undefined) return undefined
        if (record.acl instanceof AclError) return false
        return aclAllowsSubscribe(record.acl, subscription.topic) ? subscription.qos : false
      })
    },
    // Per message: stays synchronous when the lookup is (a file or static source, a warm cache).
    authorizePublish(client, packet) {
      if (client.username === undefined) return undefined
      return withRecord(lookup(client.username), (record) => {
        if (record === undefined || record.acl === undefined) return undefined
        if (record.acl instanceof AclError) return false
        return aclAllowsPublish(record.acl, packet.topic)
      })
    },
  }
}

function withRecord<T>(
  found: MaybePromise<CredentialRecord | undefined>,
  decide: (record: CredentialRecord | undefined) => T,
): MaybePromise<T> {
  if (found !== null && typeof found === 'object' && typeof (found as PromiseLike<unknown>).then === 'function') {
    return Promise.resolve(found as PromiseLike<CredentialRecord | undefined>).then(decide)
  }
  return decide(found as CredentialRecord | undefined)
}
