/** Broker state persistence: the public surface of `src/persistence` (docs/persistence.md). */
export type {
  ApplyOptions,
  ApplyResult,
  BackendHealth,
  DropPolicy,
  DroppedResult,
  InflightEntry,
  InflightStage,
  OpResult,
  PersistOp,
  PersistOpName,
  PersistenceBackend,
  PersistenceLogger,
  QoS,
  QueueEntry,
  QueuedResult,
  RemovedResult,
  RestoredSession,
  SessionRecord,
  Snapshot,
  StoredMessage,
  StoredSubscription,
  WillMessage,
} from './types'
export { PersistOpError, estimateBytes, validateOps } from './ops'
export { DEFAULT_QUEUE_LIMITS, MemoryPersistence, type MemoryPersistenceOptions, type QueueLimits } from './memory'
export {
  DEFAULT_BATCH_MARKER_TTL_MS,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_REDIS_PREFIX,
  RedisPersistence,
  createRedisPersistence,
  type RedisPersistenceOptions,
} from './redis'
export { KeyLayout, keySlot } from './keys'
export {
  DEFAULT_MAX_BUFFERED_BYTES,
  DEFAULT_MAX_BUFFERED_OPS,
  DEFAULT_MAX_OPS_PER_APPLY,
  DEFAULT_RETRY_INITIAL_MS,
  DEFAULT_RETRY_JITTER,
  DEFAULT_RETRY_MAX_MS,
  DurableWriter,
  PersistenceOverflowError,
  WriterClosedError,
  logWriterHealth,
  type DegradedEvent,
  type DurableWriterEvents,
  type DurableWriterOptions,
  type OverflowEvent,
  type RecoveredEvent,
  type RetryEvent,
  type WriterHealth,
} from './durableWriter'

import { MemoryPersistence, type QueueLimits } from './memory'
import { RedisPersistence, type RedisPersistenceOptions } from './redis'
import type { PersistenceBackend } from './types'

/** Options of `createPersistence`: `memory` (default) or `redis` with the Redis backend's options. */
export type PersistenceOptions = { kind?: 'memory'; queue?: QueueLimits } | ({ kind: 'redis' } & RedisPersistenceOptions)

/** Creates the backend a configuration asks for (not opened yet). */
export function createPersistence(options: PersistenceOptions = {}): PersistenceBackend {
  if (options.kind === 'redis') {
    const { kind: _kind, ...redis } = options
    return new RedisPersistence(redis)
  }
  return new MemoryPersistence(options.queue === undefined ? {} : { queue: options.queue })
}
