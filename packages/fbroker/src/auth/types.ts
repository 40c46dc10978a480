/**
 * Types of authentication and authorization plugins.
 *
 * A plugin is a plain object `{ name, ...hooks }`. Every hook is optional and
 * may return a value or a promise of one. Returning `undefined` or `null`
 * means "no answer": the next plugin in the chain is asked. See
 * docs/plugins.md.
 */

/** A value or a promise of it. */
export type MaybePromise<T> = T | PromiseLike<T>

/** The client a hook is asked about. */
export interface ClientInfo {
  /** The MQTT client identifier (after the broker assigned one, for an empty id). */
  readonly id: string
  /** The user name from CONNECT, if the client sent one. */
  readonly username?: string | undefined
  /** Remote address, `ip:port`. */
  readonly address: string
  /** 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0). */
  readonly protocolVersion: number
}

/** One topic filter of a SUBSCRIBE packet. */
export interface SubscriptionRequest {
  /** The topic filter (may contain `+` and `#`). */
  readonly topic: string
  /** The requested QoS: 0, 1 or 2. */
  readonly qos: number
}

/** A PUBLISH a client sent. */
export interface PublishRequest {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: number
  readonly retain: boolean
}

/** A PUBLISH together with its sender: one item of a batch. */
export interface PublishAuthorizationItem extends PublishRequest {
  readonly client: ClientInfo
}

/**
 * Answer of `authenticate`:
 * - `true`: accept the connection (CONNACK 0);
 * - `false`: refuse it, with CONNACK 4 "bad user name or password" when the
 *   client sent a user name or password, else 5 "not authorized";
 * - a number: refuse (or, for 0, accept) with that CONNACK return code
 *   (MQTT 3.1.1 codes 1–5, or an MQTT 5.0 reason code 0x80–0xFF; the broker
 *   translates between the two for the client's protocol version);
 * - `undefined` / `null`: no answer, ask the next plugin.
 */
export type AuthenticateResult = boolean | number | null | undefined

/**
 * Answer of `authorizeSubscribe`:
 * - a number 0–2: grant at most that QoS (the granted QoS is the lower of the
 *   requested one and this);
 * - `true`: grant the requested QoS;
 * - `false` (or a number ≥ 0x80): refuse this filter (SUBACK 0x80);
 * - `undefined` / `null`: no answer, ask the next plugin.
 */
export type AuthorizeSubscribeResult = number | boolean | null | undefined

/**
 * Answer of `authorizePublish`: `true` lets the message through, `false`
 * drops it, `undefined` / `null` asks the next plugin.
 */
export type AuthorizePublishResult = boolean | null | undefined

export type AuthenticateHook = (
  client: ClientInfo,
  username: string | undefined,
  password: Buffer | undefined,
) => MaybePromise<AuthenticateResult>

export type AuthorizeSubscribeHook = (
  client: ClientInfo,
  subscription: SubscriptionRequest,
) => MaybePromise<AuthorizeSubscribeResult>

export type AuthorizePublishHook = (client: ClientInfo, packet: PublishRequest) => MaybePromise<AuthorizePublishResult>

/** An authentication/authorization plugin: the default export of a plugin module. */
export interface Plugin {
  /** Shown in logs and errors. Unique within one broker. */
  readonly name: string
  /** Decides whether a client may connect. */
  authenticate?: AuthenticateHook
  /** Decides, per topic filter, whether a client may subscribe and at which QoS. */
  authorizeSubscribe?: AuthorizeSubscribeHook
  /** Decides whether a PUBLISH from a client is accepted. Called per message (batched, optionally cached). */
  authorizePublish?: AuthorizePublishHook
  /** Called once when the broker stops, to release connections, timers, files. */
  close?: () => MaybePromise<void>
}

/** Names of the hooks that are called for client traffic (the ones that cross the native boundary). */
export const HOOK_NAMES = ['authenticate', 'authorizeSubscribe', 'authorizePublish'] as const

export type HookName = (typeof HOOK_NAMES)[number]

/** Which hooks at least one plugin registers. The native core only calls into JavaScript for these. */
export type RegisteredHooks = Record<HookName, boolean>

/** Why the chain reached its decision. */
export type DecisionCause =
  /** A plugin answered. */
  | 'answer'
  /** No plugin answered (none registers the hook, or every one returned undefined/null). */
  | 'no-answer'
  /** A hook threw or its promise rejected (fail closed). */
  | 'error'
  /** A hook did not settle within the timeout (fail closed). */
  | 'timeout'
  /** A hook returned a value of the wrong type or out of range (fail closed). */
  | 'invalid'

/** Result of `PluginChain.authenticate`. */
export interface AuthDecision {
  /**
   * `allow` / `deny`: decided by a plugin, an error or a timeout.
   * `none`: no plugin answered; the broker falls through to its built-in
   * sources and `allow_anonymous` (see `resolveUnansweredAuthentication`).
   */
  readonly outcome: 'allow' | 'deny' | 'none'
  /** CONNACK return code: 0 when allowed; the refusal code otherwise; for `none`, 0. */
  readonly returnCode: number
  readonly cause: DecisionCause
  /** The plugin that answered (or failed). */
  readonly plugin?: string
}

/** The logging interface the auth modules need. A pino `Logger` fits. */
export interface AuthLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

/** One entry of a per-user access control list (Redis `acl` field, password file sources). */
export interface AclEntry {
  /** `read`: may subscribe; `write`: may publish; `readwrite`: both; `deny`: neither (wins over the others). */
  readonly access: 'read' | 'write' | 'readwrite' | 'deny'
  /** A topic filter; `+` and `#` wildcards allowed. */
  readonly topic: string
}
