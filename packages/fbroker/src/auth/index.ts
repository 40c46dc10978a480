/** Authentication and authorization plugins: the public surface of `src/auth`. */
export {
  ACL_ACCESS,
  AclError,
  aclAllowsPublish,
  aclAllowsSubscribe,
  filterCovers,
  filtersIntersect,
  parseAcl,
  topicMatches,
} from './acl'
export {
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_PUBLISH_CACHE_MAX_ENTRIES,
  DEFAULT_PUBLISH_CACHE_TTL_MS,
  HOOK_FAILURE_CODE,
  PluginChain,
  type PluginChainOptions,
} from './chain'
export {
  ConnackCode,
  SUBACK_FAILURE,
  connackCodeFor,
  isValidConnackCode,
  refusalCode,
  resolveUnansweredAuthentication,
} from './codes'
export { credentialHooks, toCredentialRecord, type CredentialLookup, type CredentialRecord } from './credentials'
export {
  PasswordFileError,
  createPasswordFilePlugin,
  createStaticAuthPlugin,
  isValidPasswordFileUser,
  parsePasswordFile,
  type PasswordFilePlugin,
  type PasswordFilePluginOptions,
  type StaticAuthPlugin,
  type StaticAuthPluginOptions,
  type StaticUser,
} from './fileSource'
export {
  DEFAULT_PBKDF2_ITERATIONS,
  HASH_BYTES,
  MAX_PBKDF2_ITERATIONS,
  SALT_BYTES,
  hashPassword,
  isPasswordHash,
  parsePasswordHash,
  verifyPassword,
  type HashPasswordOptions,
  type ParsedPasswordHash,
} from './passwordHash'
export { PluginLoadError, isPathSpec, loadPlugins, pluginProblem, registeredHooks, type PluginSpec } from './plugins'
export {
  DEFAULT_REDIS_AUTH_CACHE_MAX_ENTRIES,
  DEFAULT_REDIS_AUTH_CACHE_TTL_MS,
  DEFAULT_REDIS_AUTH_PREFIX,
  DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
  createRedisAuthPlugin,
  type RedisAuthPlugin,
  type RedisAuthPluginOptions,
} from './redisSource'
export {
  HOOK_NAMES,
  type AclEntry,
  type AuthDecision,
  type AuthLogger,
  type AuthenticateHook,
  type AuthenticateResult,
  type AuthorizePublishHook,
  type AuthorizePublishResult,
  type AuthorizeSubscribeHook,
  type AuthorizeSubscribeResult,
  type ClientInfo,
  type DecisionCause,
  type HookName,
  type MaybePromise,
  type Plugin,
  type PublishAuthorizationItem,
  type PublishRequest,
  type RegisteredHooks,
  type SubscriptionRequest,
} from './types'
