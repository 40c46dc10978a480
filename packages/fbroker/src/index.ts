export {
  Broker,
  NativePanicError,
  type AuthSummary,
  type BrokerEvents,
  type BrokerOptions,
  type ClientConnectedEvent,
  type PublishedEvent,
  type DeliveryEvent,
  type ClientErrorEvent,
  type ClientDisconnectedEvent,
  type DisconnectReason,
  type PublishOptions,
  type SubscribedEvent,
  type Subscription,
  type UnsubscribedEvent,
} from './broker'
export * from './auth'
export { ConfigError, describeSource, formatIssue, type ConfigIssue, type ConfigSource } from './config/errors'
export {
  loadConfig,
  resolveBrokerSettings,
  toBrokerOptions,
  type LoadConfigOptions,
  type LoadedConfig,
  type ValueOrigin,
} from './config/load'
export {
  CONFIG_KEYS,
  CONFIG_SCHEMA,
  LOG_FORMATS,
  LOG_LEVELS,
  QUEUE_DROP_POLICIES,
  camelCaseKey,
  configKeyTable,
  defaultConfig,
  describeType,
  envVarName,
  type BrokerSettings,
  type ConfigKey,
  type ConfigKeyRow,
  type ConfigKeySpec,
  type EnumKeySpec,
  type FbrokerConfig,
  type IntegerKeySpec,
  type LogFormat,
  type LogLevel,
  type QueueDropPolicy,
  type StringKeySpec,
} from './config/schema'
export { createLogger, type Logger, type LoggerOptions } from './log'
export type { NativeBoundListener, NativeOpenFileLimit, NativeStats } from './native'
export { VERSION } from './version'
export {
  MemoryPersistence,
  RedisPersistence,
  DurableWriter,
  PersistenceOverflowError,
  createPersistence,
  type PersistenceBackend,
  type PersistOp,
  type Snapshot,
  type StoredMessage,
  type SessionRecord,
  type RedisPersistenceOptions,
  type MemoryPersistenceOptions,
} from './persistence'
export type { ResolvedListener } from './config/listeners'
export type { PersistenceHealthEvent } from './persistence/controller'
