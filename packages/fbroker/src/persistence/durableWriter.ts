/**
 * The durable writer: the one path from the core's batches of ops to a
 * persistence backend (any backend).
 *
 * - Batches submitted within one event-loop turn are coalesced into one
 *   `apply`; batches that arrive while an apply is under way wait and go
 *   into the next one. At most one apply is under way at a time, so the ops
 *   of a client reach the backend in submission order.
 * - A batch's promise resolves, with its own ops' results, once the apply
 *   holding it resolved (its ops are durable). That is the acknowledgement
 *   the core waits for before PUBACK/PUBREC in acknowledge-after-store mode.
 * - When an apply fails (store down or slow) the writer retries the same ops
 *   with the same batch id (so a partly applied batch is not applied twice)
 *   with exponential backoff, forever, and keeps accepting batches into its
 *   buffer up to a bound (ops and bytes). Past the bound `submit` rejects
 *   with `PersistenceOverflowError`: the core must refuse what needed the
 *   write. Nothing that was acknowledged is lost, and nothing is
 *   acknowledged before it is stored.
 * - Transitions are emitted as events for logging and health checks:
 *   `degraded`, `retry`, `recovered`, `overflow`.
 */
import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import { estimateBytes, PersistOpError, validateOps } from './ops'
import type { ApplyResult, BackendHealth, OpResult, PersistOp, PersistenceBackend, PersistenceLogger } from './types'

export const DEFAULT_MAX_BUFFERED_OPS = 100_000
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
export const DEFAULT_MAX_OPS_PER_APPLY = 5000
export const DEFAULT_RETRY_INITIAL_MS = 50
export const DEFAULT_RETRY_MAX_MS = 5000
export const DEFAULT_RETRY_JITTER = 0.2

export interface DurableWriterOptions {
  /**
   * Most ops held (waiting or being applied) before new batches are refused.
   * A batch submitted while nothing is held is always taken, whatever its size.
   * Default 100000.
   */
  maxBufferedOps?: number
  /** Most bytes held (see `estimateBytes`: payloads once per message id, plus a per-op overhead). Default 64 MiB. */
  maxBufferedBytes?: number
  /** Most ops per apply; batches are never split, so one larger batch still goes alone. Default 5000. */
  maxOpsPerApply?: number
  /** First retry delay in ms; it doubles per failed attempt. Default 50. */
  retryInitialMs?: number
  /** Longest retry delay in ms. Default 5000. */
  retryMaxMs?: number
  /** Random spread of each delay, as a fraction (0.2: ±20 %). Default 0.2. */
  retryJitter?: number
  /** Prefix of batch ids (default: random). */
  id?: string
}

/** `submit` refused a batch: the buffer is full (the store is down or too slow). Nothing of the batch was taken. */
export class PersistenceOverflowError extends Error {
  readonly code = 'PERSISTENCE_OVERFLOW'
  readonly bufferedOps: number
  readonly bufferedBytes: number

  constructor(bufferedOps: number, bufferedBytes: number, maxOps: number, maxBytes: number) {
    super(`persistence buffer full (${bufferedOps}/${maxOps} ops, ${bufferedBytes}/${maxBytes} bytes): the store is unavailable or too slow`)
    this.name = 'PersistenceOverflowError'
    this.bufferedOps = bufferedOps
    this.bufferedBytes = bufferedBytes
  }
}

/** The writer was closed: the batch was refused, or was not stored before `close` gave up. */
export class WriterClosedError extends Error {
  readonly code = 'PERSISTENCE_CLOSED'

  constructor(message = 'durable writer is closed') {
    super(message)
    this.name = 'WriterClosedError'
  }
}

export interface DegradedEvent {
  /** The failure that started the episode. */
  error: Error
  bufferedOps: number
  bufferedBytes: number
  /** When the episode started (ms since the epoch). */
  since: number
}

export interface RetryEvent {
  error: Error
  /** Failed attempts of this apply so far. */
  attempt: number
  /** Milliseconds until the next attempt. */
  delayMs: number
  /** Ops of the apply being retried. */
  ops: number
}

export interface RecoveredEvent {
  /** Milliseconds since `degraded`. */
  downtimeMs: number
  /** Failed attempts during the episode. */
  failedAttempts: number
  bufferedOps: number
  bufferedBytes: number
}

export interface OverflowEvent {
  bufferedOps: number
  bufferedBytes: number
  maxBufferedOps: number
  maxBufferedBytes: number
  /** Ops of the batch that was refused. */
  refusedOps: number
}

export interface DurableWriterEvents {
  /** The first failed apply after a success: the store is down or slow; batches are buffered. */
  degraded: [event: DegradedEvent]
  /** Every failed apply, with the delay before the next attempt. */
  retry: [event: RetryEvent]
  /** An apply succeeded after failures: everything buffered is flowing again. */
  recovered: [event: RecoveredEvent]
  /** The first refused batch of an overflow episode (which ends once the buffer is back under half its bounds). */
  overflow: [event: OverflowEvent]
}

export interface WriterHealth {
  /** `ok`: applies succeed; `degraded`: the last apply failed and is being retried; `closed`. */
  state: 'ok' | 'degraded' | 'closed'
  /** Ops held: waiting, or in the apply under way. */
  bufferedOps: number
  bufferedBytes: number
  /** Batches held. */
  bufferedBatches: number
  /** Whether new batches are being refused (an overflow episode). */
  overflowing: boolean
  /** When the current degraded episode started. */
  degradedSince?: number
  lastError?: string
  lastErrorAt?: number
  /** Totals since the writer was created. */
  appliedBatches: number
  appliedOps: number
  failedAttempts: number
  refusedBatches: number
  refusedOps: number
  backend: BackendHealth
}

/** A backend answered with the wrong number of results (a bug: retrying would not help). */
class InvalidResultError extends Error {}

interface Held {
  ops: readonly PersistOp[]
  bytes: number
  resolve(results: OpResult[]): void
  reject(err: Error): void
}

interface Apply {
  batches: Held[]
  ops: PersistOp[]
  bytes: number
  batchId: string
  attempts: number
}

function positive(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) throw new RangeError(`${name} must be a number of at least ${min}, got ${String(value)}`)
  return value
}

// Typed overloads of the EventEmitter methods.
export interface DurableWriter {
  on<K extends keyof DurableWriterEvents>(event: K, listener: (...args: DurableWriterEvents[K]) => void): this
  once<K extends keyof DurableWriterEvents>(event: K, listener: (...args: DurableWriterEvents[K]) => void): this
  off<K extends keyof DurableWriterEvents>(event: K, listener: (...args: DurableWriterEvents[K]) => void): this
  emit<K extends keyof DurableWriterEvents>(event: K, ...args: DurableWriterEvents[K]): boolean
}

export class DurableWriter extends EventEmitter {
  readonly backend: PersistenceBackend
  readonly #maxOps: number
  readonly #maxBytes: number
  readonly #maxPerApply: number
  readonly #retryInitial: number
  readonly #retryMax: number
  readonly #jitter: number
  readonly #id: string
  #seq = 0
  #waiting: Held[] = []
  #current: Apply | undefined
  #scheduled = false
  #timer: NodeJS.Timeout | undefined
  #bufferedOps = 0
  #bufferedBytes = 0
  #closing = false
  #closed = false
  #idle: Array<() => void> = []
  #degradedSince: number | undefined
  #episodeFailures = 0
  #overflowing = false
  #lastError: string | undefined
  #lastErrorAt: number | undefined
  #appliedBatches = 0
  #appliedOps = 0
  #failedAttempts = 0
  #refusedBatches = 0
  #refusedOps = 0

  constructor(backend: PersistenceBackend, options: DurableWriterOptions = {}) {
    super()
    this.backend = backend
    this.#maxOps = positive('maxBufferedOps', options.maxBufferedOps, DEFAULT_MAX_BUFFERED_OPS)
    this.#maxBytes = positive('maxBufferedBytes', options.maxBufferedBytes, DEFAULT_MAX_BUFFERED_BYTES)
    this.#maxPerApply = positive('maxOpsPerApply', options.maxOpsPerApply, DEFAULT_MAX_OPS_PER_APPLY)
    this.#retryInitial = positive('retryInitialMs', options.retryInitialMs, DEFAULT_RETRY_INITIAL_MS)
    this.#retryMax = Math.max(this.#retryInitial, positive('retryMaxMs', options.retryMaxMs, DEFAULT_RETRY_MAX_MS))
    this.#jitter = positive('retryJitter', options.retryJitter, DEFAULT_RETRY_JITTER, 0)
    if (this.#jitter > 1) throw new RangeError(`retryJitter must be at most 1, got ${this.#jitter}`)
    this.#id = options.id ?? randomUUID().slice(0, 8)
  }

  /**
   * Takes a batch of ops. Resolves with one result per op once they are
   * durable; rejects at once with `PersistenceOverflowError` when the buffer
   * is full, `PersistOpError` when an op is malformed, or `WriterClosedError`
   * after `close()` (nothing of the batch is taken then).
   */
  submit(ops: readonly PersistOp[]): Promise<OpResult[]> {
    if (this.#closing) return Promise.reject(new WriterClosedError())
    try {
      validateOps(ops)
    } catch (err) {
      return Promise.reject(err)
    }
    if (ops.length === 0) return Promise.resolve([])
    const bytes = estimateBytes(ops)
    if (this.#bufferedOps > 0 && (this.#bufferedOps + ops.length > this.#maxOps || this.#bufferedBytes + bytes > this.#maxBytes)) {
      this.#refusedBatches++
      this.#refusedOps += ops.length
      if (!this.#overflowing) {
        this.#overflowing = true
        this.emit('overflow', {
          bufferedOps: this.#bufferedOps,
          bufferedBytes: this.#bufferedBytes,
          maxBufferedOps: this.#maxOps,
          maxBufferedBytes: this.#maxBytes,
          refusedOps: ops.length,
        })
      }
      return Promise.reject(new PersistenceOverflowError(this.#bufferedOps, this.#bufferedBytes, this.#maxOps, this.#maxBytes))
    }
    return new Promise<OpResult[]>((resolve, reject) => {
      this.#waiting.push({ ops, bytes, resolve, reject })
      this.#bufferedOps += ops.length
      this.#bufferedBytes += bytes
      if (this.#current === undefined && !this.#scheduled) {
        this.#scheduled = true
        setImmediate(() => {
          this.#scheduled = false
          this.#startNext()
        })
      }
    })
  }

  /** Resolves once every batch submitted so far was stored (or refused by `close`). */
  flush(): Promise<void> {
    if (this.#current === undefined && this.#waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /**
   * Refuses new batches and waits for the held ones to be stored. After
   * `timeoutMs` (default: no limit) it stops retrying and rejects the batches
   * still held with `WriterClosedError` (they were never acknowledged).
   * Does not close the backend.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing = true
    if (this.#closed) return
    const drained = this.flush()
    if (options.timeoutMs === undefined) await drained
    else {
      let timer: NodeJS.Timeout | undefined
      const timedOut = await Promise.race([
        drained.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), options.timeoutMs))),
      ])
      clearTimeout(timer)
      if (timedOut) this.#abandon(new WriterClosedError(`durable writer closed before the batch was stored (${this.#lastError ?? 'store too slow'})`))
    }
    this.#closed = true
  }

  health(): WriterHealth {
    const h: WriterHealth = {
      state: this.#closed ? 'closed' : this.#degradedSince !== undefined ? 'degraded' : 'ok',
      bufferedOps: this.#bufferedOps,
      bufferedBytes: this.#bufferedBytes,
      bufferedBatches: this.#waiting.length + (this.#current?.batches.length ?? 0),
      overflowing: this.#overflowing,
      appliedBatches: this.#appliedBatches,
      appliedOps: this.#appliedOps,
      failedAttempts: this.#failedAttempts,
      refusedBatches: this.#refusedBatches,
      refusedOps: this.#refusedOps,
      backend: this.backend.health(),
    }
    if (this.#degradedSince !== undefined) h.degradedSince = this.#degradedSince
    if (this.#lastError !== undefined) {
      h.lastError = this.#lastError
      h.lastErrorAt = this.#lastErrorAt!
    }
    return h
  }

  #startNext(): void {
    if (this.#current !== undefined || this.#waiting.length === 0) return
    const batches = [this.#waiting.shift()!]
    let count = batches[0]!.ops.length
    while (this.#waiting.length > 0 && count + this.#waiting[0]!.ops.length <= this.#maxPerApply) {
      const next = this.#waiting.shift()!
      count += next.ops.length
      batches.push(next)
    }
    const ops: PersistOp[] = []
    let bytes = 0
    for (const b of batches) {
      for (const op of b.ops) ops.push(op)
      bytes += b.bytes
    }
    this.#current = { batches, ops, bytes, batchId: `${this.#id}:${++this.#seq}`, attempts: 0 }
    void this.#run(this.#current)
  }

  async #run(apply: Apply): Promise<void> {
    let result: ApplyResult
    try {
      result = await this.backend.apply(apply.ops, { batchId: apply.batchId })
      if (!Array.isArray(result?.results) || result.results.length !== apply.ops.length) {
        throw new InvalidResultError(`persistence backend returned ${String(result?.results?.length)} results for ${apply.ops.length} ops`)
      }
    } catch (err) {
      if (this.#current !== apply) return // abandoned by close()
      const error = err instanceof Error ? err : new Error(String(err))
      if (error instanceof PersistOpError || error instanceof InvalidResultError) {
        // Not something a retry fixes (submit validated every batch): a bug; refuse the batches.
        this.#finish(apply)
        for (const b of apply.batches) b.reject(error)
        this.#afterApply()
        return
      }
      this.#failed(apply, error)
      return
    }
    if (this.#current !== apply) return
    this.#finish(apply)
    this.#appliedBatches += apply.batches.length
    this.#appliedOps += apply.ops.length
    let offset = 0
    for (const b of apply.batches) {
      b.resolve(result.results.slice(offset, offset + b.ops.length))
      offset += b.ops.length
    }
    if (this.#degradedSince !== undefined) {
      const event: RecoveredEvent = {
        downtimeMs: Date.now() - this.#degradedSince,
        failedAttempts: this.#episodeFailures,
        bufferedOps: this.#bufferedOps,
        bufferedBytes: this.#bufferedBytes,
      }
      this.#degradedSince = undefined
      this.#episodeFailures = 0
      this.emit('recovered', event)
    }
    this.#afterApply()
  }

  #finish(apply: Apply): void {
    this.#current = undefined
    this.#bufferedOps -= apply.ops.length
    this.#bufferedBytes -= apply.bytes
  }

  #afterApply(): void {
    if (this.#overflowing && this.#bufferedOps <= this.#maxOps / 2 && this.#bufferedBytes <= this.#maxBytes / 2) this.#overflowing = false
    if (this.#waiting.length > 0) this.#startNext()
    else this.#wake()
  }

  #wake(): void {
    for (const resolve of this.#idle.splice(0)) resolve()
  }

  #failed(apply: Apply, error: Error): void {
    apply.attempts++
    this.#failedAttempts++
    this.#episodeFailures++
    this.#lastError = error.message
    this.#lastErrorAt = Date.now()
    if (this.#degradedSince === undefined) {
      this.#degradedSince = this.#lastErrorAt
      this.emit('degraded', { error, bufferedOps: this.#bufferedOps, bufferedBytes: this.#bufferedBytes, since: this.#degradedSince })
    }
    const base = Math.min(this.#retryInitial * 2 ** (apply.attempts - 1), this.#retryMax)
    const delayMs = Math.max(0, Math.round(base * (1 + this.#jitter * (Math.random() * 2 - 1))))
    this.emit('retry', { error, attempt: apply.attempts, delayMs, ops: apply.ops.length })
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (this.#current === apply) void this.#run(apply)
    }, delayMs)
  }

  /** Stops retrying and rejects every held batch. */
  #abandon(error: Error): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const held = [...(this.#current?.batches ?? []), ...this.#waiting]
    this.#current = undefined
    this.#waiting = []
    this.#bufferedOps = 0
    this.#bufferedBytes = 0
    for (const b of held) b.reject(error)
    this.#wake()
  }
}

/**
 * Logs a writer's health transitions: `degraded` and `overflow` as errors,
 * `recovered` as info, each `retry` at debug level. Returns a function that
 * stops logging.
 */
export function logWriterHealth(writer: DurableWriter, logger: PersistenceLogger): () => void {
  const degraded = (e: DegradedEvent) =>
    logger.error(
      { err: e.error, bufferedOps: e.bufferedOps, bufferedBytes: e.bufferedBytes },
      `persistence store unavailable (${e.error.message}): buffering durable writes and retrying; ` +
        'acknowledgements that need a write wait until it is stored',
    )
  const retry = (e: RetryEvent) => logger.debug({ attempt: e.attempt, delayMs: e.delayMs, ops: e.ops, err: e.error }, 'persistence: retrying a batch')
  const recovered = (e: RecoveredEvent) =>
    logger.info(
      { downtimeMs: e.downtimeMs, failedAttempts: e.failedAttempts, bufferedOps: e.bufferedOps },
      `persistence store available again after ${e.downtimeMs} ms; buffered writes are being stored`,
    )
  const overflow = (e: OverflowEvent) =>
    logger.error(
      { bufferedOps: e.bufferedOps, bufferedBytes: e.bufferedBytes, maxBufferedOps: e.maxBufferedOps, maxBufferedBytes: e.maxBufferedBytes },
      'persistence buffer full: refusing publishes and other changes that need a durable write until the store catches up',
    )
  writer.on('degraded', degraded)
  writer.on('retry', retry)
  writer.on('recovered', recovered)
  writer.on('overflow', overflow)
  return () => {
    writer.off('degraded', degraded)
    writer.off('retry', retry)
    writer.off('recovered', recovered)
    writer.off('overflow', overflow)
  }
}
