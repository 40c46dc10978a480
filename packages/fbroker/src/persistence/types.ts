/**
 * The persistence contract between the native core and a storage backend.
 *
 * The core describes every change to durable broker state as a `PersistOp`
 * and hands them over in batches (through a `DurableWriter`, which coalesces
 * and retries them). A backend applies a batch, keeping the order of the ops
 * of each client, and resolves once the batch is durable. At start the core
 * restores its state from `load()`. See docs/persistence.md.
 */

/** MQTT quality of service. */
export type QoS = 0 | 1 | 2

/** What a full session queue discards: its oldest message (`drop_oldest`) or the arriving one (`drop_new`). */
export type DropPolicy = 'drop_oldest' | 'drop_new'

/**
 * An application message as stored. A message fanned out to many sessions
 * is stored once (per backend, see docs/persistence.md) and referenced by
 * `id` from every queue and in-flight entry that holds it; it is deleted
 * when the last reference goes.
 */
export interface StoredMessage {
  /**
   * Unique id of this message, assigned by the core (e.g. node id and a
   * counter). Two messages with the same id must have the same content: a
   * backend that already holds the id keeps its stored copy.
   */
  id: string
  /** Topic name it was published to. */
  topic: string
  /** Application payload (any bytes). */
  payload: Buffer
  /** QoS the publisher used. Each subscriber receives min(this, granted); that is `QueueEntry.qos`. */
  qos: QoS
  /** RETAIN flag the publisher set. */
  retain: boolean
  /** Client id of the publisher, when known ('' or absent: the broker itself, e.g. `Broker.publish`). */
  publisher?: string
  /** When the broker accepted it, in milliseconds since the Unix epoch. */
  timestamp?: number
}

/** The will of a session: published when its client goes away without DISCONNECT. */
export interface WillMessage {
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
}

/** The durable part of a session (per client id). */
export interface SessionRecord {
  /**
   * The CONNECT clean-session flag. Clean sessions are stored too (their
   * will must survive a broker crash); the core deletes them when their
   * client disconnects, and deletes those it finds in `load()`.
   */
  clean: boolean
  /**
   * Whether the client was connected when the record was saved. A session
   * loaded with `connected` true was cut off by a broker crash: its will is
   * due.
   */
  connected: boolean
  /**
   * When the session may be discarded (milliseconds since the epoch), or
   * null: never (while its client is connected, or `session_expiry_secs` 0).
   * `expire(now)` removes sessions whose `expiresAt` is at or before `now`.
   */
  expiresAt: number | null
  /** When its client was last connected (ms since the epoch). */
  lastSeen: number
  /** Id of the broker node that owns the session (its client is connected there, or was last). */
  node: string
  /**
   * Ownership epoch: incremented by the core on every takeover, so a node can
   * tell that another one took the session over. Stored, not interpreted.
   */
  epoch: number
  /** The will, or null when the client has none. */
  will: WillMessage | null
}

/**
 * A change to durable state. Ops that name a client (all but `retained.*`)
 * only act on a client whose session was saved (`session.save`) and not
 * deleted since: on any other client they change nothing (a `queue.push`
 * reports `no_session`). So no state can outlive its session.
 */
export type PersistOp =
  /** Creates or replaces the session record (subscriptions, queue and in-flight state are kept). */
  | { op: 'session.save'; clientId: string; session: SessionRecord }
  /** Removes the session and every other key of the client: subscriptions, queue, in-flight and inbound state. */
  | { op: 'session.delete'; clientId: string }
  /** Adds a subscription, or replaces the QoS of an existing one with the same filter. */
  | { op: 'sub.add'; clientId: string; filter: string; qos: QoS }
  /** Removes a subscription (no-op when it does not exist). */
  | { op: 'sub.remove'; clientId: string; filter: string }
  /**
   * Appends a message to the client's queue. The queue is bounded by count
   * and payload bytes (backend options); when full the drop policy is applied
   * atomically with the append. The result says whether it was stored.
   */
  | {
      op: 'queue.push'
      clientId: string
      message: StoredMessage
      /** Delivery QoS: min(message.qos, granted QoS). Default `message.qos`. */
      qos?: QoS
      /** RETAIN flag of the delivery (set only for retained messages sent because of a new subscription). Default false. */
      retain?: boolean
    }
  /** The oldest `count` queued messages left the queue (delivered, or moved into the in-flight window). */
  | { op: 'queue.remove'; clientId: string; count: number }
  /**
   * Records an outbound QoS 1/2 delivery awaiting an acknowledgement.
   * `puback`/`pubrec`: the PUBLISH was sent; `message` is required when the
   * packet id is not yet in flight (it may be omitted when only the stage or
   * flags change). `pubcomp`: PUBREC arrived and PUBREL was sent; the message
   * is released (only PUBREL is resent after a restart).
   */
  | {
      op: 'inflight.set'
      clientId: string
      packetId: number
      stage: InflightStage
      message?: StoredMessage
      /** RETAIN flag of the delivery. Default: the stored entry's, else false. (The delivery QoS follows from the stage: 1 for `puback`, 2 otherwise.) */
      retain?: boolean
    }
  /** The outbound delivery with this packet id completed (PUBACK or PUBCOMP arrived). */
  | { op: 'inflight.clear'; clientId: string; packetId: number }
  /** An inbound QoS 2 PUBLISH with this packet id got PUBREC; PUBREL has not arrived yet. */
  | { op: 'incoming.add'; clientId: string; packetId: number }
  /** PUBREL for this inbound packet id arrived (PUBCOMP sent). */
  | { op: 'incoming.remove'; clientId: string; packetId: number }
  /** Stores the retained message of `topic`, replacing the previous one. (A zero-length payload means delete: send `retained.delete`.) */
  | { op: 'retained.set'; topic: string; message: StoredMessage }
  /** Removes the retained message of `topic` (no-op when there is none). */
  | { op: 'retained.delete'; topic: string }

/** Names of the `PersistOp` kinds. */
export type PersistOpName = PersistOp['op']

/** Stage of an outbound in-flight delivery: the acknowledgement it waits for. */
export type InflightStage = 'puback' | 'pubrec' | 'pubcomp'

/** Result of one `queue.push`: stored (after evicting `evicted` older messages under `drop_oldest`). */
export interface QueuedResult {
  kind: 'queued'
  /** Messages discarded from the head of the queue to make room (0 when it fit). */
  evicted: number
}

/**
 * Result of one `queue.push` that stored nothing:
 * - `queue_full`: the queue is full and the policy is `drop_new`;
 * - `too_large`: the payload alone exceeds the byte limit (whatever the policy);
 * - `no_session`: the client has no saved session.
 */
export interface DroppedResult {
  kind: 'dropped'
  reason: 'queue_full' | 'too_large' | 'no_session'
}

/** Result of one `queue.remove`: how many messages actually left the queue (fewer when it was shorter). */
export interface RemovedResult {
  kind: 'removed'
  count: number
}

/** Per-op outcome, at the op's index. null for ops without a result (every op but `queue.push` and `queue.remove`). */
export type OpResult = QueuedResult | DroppedResult | RemovedResult | null

export interface ApplyResult {
  /** One entry per op of the batch, in the same order. */
  results: OpResult[]
}

export interface ApplyOptions {
  /**
   * Identifies the batch for idempotent retries: applying a batch again
   * with the same id after it was (possibly partly) applied has the effect
   * of applying it once, and returns the same results. Only the most recent
   * batch id per client is remembered, so a retry must come before any
   * other batch. Default: a fresh random id (no retry protection).
   */
  batchId?: string
}

/** A queued message of a restored session, oldest first. */
export interface QueueEntry {
  message: StoredMessage
  /** Delivery QoS. */
  qos: QoS
  /** RETAIN flag of the delivery. */
  retain: boolean
}

/** An outbound delivery awaiting acknowledgement in a restored session (resend with DUP). */
export interface InflightEntry {
  packetId: number
  stage: InflightStage
  /** Delivery QoS: 1 at stage `puback`, 2 otherwise. */
  qos: QoS
  retain: boolean
  /** The message to resend (stages `puback` and `pubrec`); absent at `pubcomp` (only PUBREL is resent). */
  message?: StoredMessage
}

/** One subscription of a restored session. */
export interface StoredSubscription {
  filter: string
  qos: QoS
}

/** Everything stored for one client. */
export interface RestoredSession {
  clientId: string
  session: SessionRecord
  /** Sorted by filter. */
  subscriptions: StoredSubscription[]
  /** Oldest first. */
  queue: QueueEntry[]
  /** In the order the deliveries were first sent (MQTT 3.1.1 4.6: resend in that order). */
  inflight: InflightEntry[]
  /** Inbound QoS 2 packet ids awaiting PUBREL, ascending. */
  incoming: number[]
}

/** What the core needs to restore at start. Message objects shared by several entries are the same object. */
export interface Snapshot {
  /** Every stored session, sorted by client id. */
  sessions: RestoredSession[]
  /** Every retained message, sorted by topic (`retain` is true). */
  retained: StoredMessage[]
}

/** Connection state of a backend. */
export interface BackendHealth {
  /** Whether the backend can take writes right now. */
  connected: boolean
  /** Backend-specific state (ioredis: `ready`, `connecting`, `reconnecting`, `end`…; memory: `open`/`closed`). */
  status: string
  /** The last error the backend saw (connection or command), if any. */
  lastError?: string
  /** When that happened (ms since the epoch). */
  lastErrorAt?: number
}

/** A persistence backend. Every method but `health` may reject when the store is unreachable. */
export interface PersistenceBackend {
  /** `memory` or `redis`. */
  readonly kind: string
  /** Connects (and loads scripts); resolves when ready. Rejects when the store cannot be reached in time. */
  open(): Promise<void>
  /** Closes the connection (not a client passed in by the caller). Idempotent. */
  close(): Promise<void>
  /**
   * Applies a batch and resolves once it is durable (Redis: once every
   * command's reply arrived). The ops of one client are applied in order and
   * atomically per client; ops of different clients may be applied in any
   * order. Rejects (and may have applied part of the batch) on a store error;
   * retry with the same `batchId`. Rejects with a `TypeError` before applying
   * anything when an op is malformed.
   */
  apply(ops: readonly PersistOp[], options?: ApplyOptions): Promise<ApplyResult>
  /** Everything needed to restore at start. */
  load(): Promise<Snapshot>
  /** Retained messages whose topic matches the MQTT filter (sorted by topic), found through the retained index. */
  matchRetained(filter: string): Promise<StoredMessage[]>
  /** Removes sessions with `expiresAt <= now` and all their state; returns their client ids (sorted). */
  expire(now: number): Promise<string[]>
  health(): BackendHealth
}

/** Where persistence logs (a pino logger fits). */
export interface PersistenceLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}
