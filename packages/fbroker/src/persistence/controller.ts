/**
 * Runs a persistence backend for a broker: opens it, drops expired
 * sessions, reads the snapshot the native core restores from, then takes
 * the core's journal batches, writes them through a `DurableWriter` and
 * answers each batch, in order, with `persistAck(seq, stored)`.
 */

import { randomUUID } from 'node:crypto'
import type { Logger } from '../log'
import { toNativePersistence, toPersistOps, type NativePersistBatch, type NativePersistence, type PersistenceMode } from './bridge'
import { DurableWriter, logWriterHealth, type DurableWriterOptions, type WriterHealth } from './durableWriter'
import type { PersistenceBackend } from './types'

/** Where the answers go: the native broker, once it exists. */
export interface JournalAcknowledger {
  persistAck(seq: number, stored: boolean): void
}

/** A change in the persistence store's health, as the `Broker` emits it. */
export interface PersistenceHealthEvent {
  /** `degraded`: writes fail and are buffered and retried; `recovered`: they flow again; `overflow`: the buffer is full, publishes that need storing are refused. */
  state: 'degraded' | 'recovered' | 'overflow'
  /** The failure, for `degraded`. */
  error?: string
  /** For `recovered`: how long the store was unavailable. */
  downtimeMs?: number
  bufferedOps: number
  bufferedBytes: number
}

export interface PersistenceControllerOptions {
  backend: PersistenceBackend
  mode: PersistenceMode
  logger: Logger
  writer?: DurableWriterOptions
  /** Close the backend with the broker (not for a backend the caller passed in and keeps). */
  ownsBackend: boolean
  /** Names this broker as the owner of the sessions it saves. */
  nodeId?: string
}

export class PersistenceController {
  readonly backend: PersistenceBackend
  readonly #writer: DurableWriter
  readonly #logger: Logger
  readonly #mode: PersistenceMode
  readonly #ownsBackend: boolean
  readonly #nodeId: string
  readonly #stopHealthLog: () => void
  /** Answers go out strictly in batch order. */
  #acks: Promise<void>
  #resolveTarget!: (target: JournalAcknowledger) => void
  readonly #target: Promise<JournalAcknowledger>
  #refused = 0

  private constructor(options: PersistenceControllerOptions) {
    this.backend = options.backend
    this.#logger = options.logger
    this.#mode = options.mode
    this.#ownsBackend = options.ownsBackend
    this.#nodeId = options.nodeId ?? randomUUID().slice(0, 8)
    this.#writer = new DurableWriter(options.backend, options.writer)
    this.#stopHealthLog = logWriterHealth(this.#writer, options.logger)
    this.#target = new Promise((resolve) => (this.#resolveTarget = resolve))
    this.#acks = Promise.resolve()
  }

  /**
   * Opens the backend and reads what the core restores. Rejects (with the
   * backend closed) when the store cannot be reached: a broker must not
   * start with an empty state over a store it could not read.
   */
  static async open(options: PersistenceControllerOptions): Promise<{ controller: PersistenceController; setup: NativePersistence }> {
    const controller = new PersistenceController(options)
    try {
      await options.backend.open()
      const expired = await options.backend.expire(Date.now())
      if (expired.length > 0) options.logger.info({ sessions: expired.length }, `persistence: removed ${expired.length} expired sessions`)
      const snapshot = await options.backend.load()
      const setup = toNativePersistence(snapshot, options.mode)
      options.logger.info(
        { backend: options.backend.kind, sessions: setup.sessions.length, retained: setup.retained.length, mode: options.mode },
        `persistence: ${options.backend.kind}, ${setup.sessions.length} sessions and ${setup.retained.length} retained messages to restore`,
      )
      return { controller, setup }
    } catch (err) {
      controller.#stopHealthLog()
      if (options.ownsBackend) await options.backend.close().catch(() => undefined)
      throw err
    }
  }

  get mode(): PersistenceMode {
    return this.#mode
  }

  /** The native broker is running: answers can go to it. */
  attach(target: JournalAcknowledger): void {
    this.#resolveTarget(target)
  }

  /** Calls `listener` on each outage transition of the store: degraded, recovered, overflow. */
  onHealth(listener: (event: PersistenceHealthEvent) => void): void {
    this.#writer.on('degraded', (e) => listener({ state: 'degraded', error: e.error.message, bufferedOps: e.bufferedOps, bufferedBytes: e.bufferedBytes }))
    this.#writer.on('recovered', (e) => listener({ state: 'recovered', downtimeMs: e.downtimeMs, bufferedOps: e.bufferedOps, bufferedBytes: e.bufferedBytes }))
    this.#writer.on('overflow', (e) => listener({ state: 'overflow', bufferedOps: e.bufferedOps, bufferedBytes: e.bufferedBytes }))
  }

  health(): WriterHealth & { refusedBatches: number } {
    return { ...this.#writer.health(), refusedBatches: this.#refused }
  }

  /** The threadsafe-function callback for journal batches. */
  onBatch(err: Error | null | NativePersistBatch, batch?: NativePersistBatch): void {
    if (err !== null && !(err instanceof Error)) [err, batch] = [null, err]
    if (err || batch === undefined) {
      // Cannot happen short of a binding bug; the batch's publishers then
      // wait until their connections close.
      this.#logger.error({ err }, 'persistence: a journal batch could not be delivered')
      return
    }
    const seq = batch.seq
    let stored: Promise<boolean>
    try {
      const ops = toPersistOps(batch, { nodeId: this.#nodeId, now: Date.now() })
      stored = this.#writer.submit(ops).then(
        () => true,
        (error: unknown) => {
          this.#refused++
          this.#logger.error({ err: error, seq, ops: ops.length }, 'persistence: a journal batch was refused; its publishes are not acknowledged')
          return false
        },
      )
    } catch (error) {
      this.#logger.error({ err: error, seq }, 'persistence: malformed journal batch')
      stored = Promise.resolve(false)
    }
    this.#acks = this.#acks.then(async () => {
      const ok = await stored
      const target = await this.#target
      try {
        target.persistAck(seq, ok)
      } catch {
        // The broker stopped meanwhile.
      }
    })
  }

  /** Waits for what was handed over to be stored (up to `timeoutMs`), then closes the store. */
  async close(timeoutMs = 5000): Promise<void> {
    await this.#writer.close({ timeoutMs }).catch((err: unknown) => this.#logger.warn({ err }, 'persistence: closing the writer'))
    this.#stopHealthLog()
    if (this.#ownsBackend) await this.backend.close().catch((err: unknown) => this.#logger.warn({ err }, 'persistence: closing the store'))
  }
}
