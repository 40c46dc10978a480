import { availableParallelism } from 'node:os'
import { PluginLoadError } from '../auth/plugins'
import { Broker, type AuthSummary } from '../broker'
import { ConfigError } from '../config/errors'
import { loadConfig, type LoadedConfig } from '../config/load'
import { createLogger, isPretty, type Logger } from '../log'
import type { NativeBoundListener } from '../native'
import { VERSION } from '../version'

/** Options of `fbroker start`, as commander hands them over. */
export interface StartFlags {
  config?: string
  port?: string
  host?: string
  logLevel?: string
  passwordFile?: string
  aclFile?: string
  allowAnonymous?: string
  /** `--plugin`, repeatable. */
  plugin?: string[]
}

/** Exit code for configuration and usage errors. */
export const EXIT_CONFIG_ERROR = 2
/** Exit code when the broker cannot start or stop cleanly. */
export const EXIT_FAILURE = 1

function listenerUrl(listener: NativeBoundListener): string {
  const scheme = listener.protocol === 'tcp' ? 'mqtt' : listener.protocol
  const host = listener.host.includes(':') ? `[${listener.host}]` : listener.host
  return `${scheme}://${host}:${listener.port}`
}

function limitText(value: number): string {
  return value === 0 ? 'unlimited' : String(value)
}

function logBanner(logger: Logger, loaded: LoadedConfig, broker: Broker, pretty: boolean): void {
  const c = loaded.config
  const source = loaded.file ?? 'none (defaults, environment and flags)'
  logger.info(
    pretty ? {} : { version: VERSION, node: process.version, config_file: loaded.file ?? null },
    `fbroker ${VERSION} (node ${process.version}, pid ${process.pid}), config file: ${source}`,
  )
  for (const listener of broker.boundListeners) {
    const url = listenerUrl(listener)
    logger.info(pretty ? {} : { listener: url }, `listening on ${url}`)
  }
  const files = broker.openFileLimit
  const workers = c.worker_threads === 0 ? availableParallelism() : c.worker_threads
  const limits = {
    max_connections: c.max_connections,
    max_packet_size: c.max_packet_size,
    max_inflight_messages: c.max_inflight_messages,
    max_queued_messages: c.max_queued_messages,
    max_queued_bytes: c.max_queued_bytes,
    queue_drop_policy: c.queue_drop_policy,
    max_topic_levels: c.max_topic_levels,
    max_topic_length: c.max_topic_length,
    max_client_id_length: c.max_client_id_length,
    connect_timeout_ms: c.connect_timeout_ms,
    session_expiry_secs: c.session_expiry_secs,
    open_files_soft: files?.soft ?? null,
    open_files_hard: files?.hard ?? null,
    worker_threads: workers,
  }
  const text = [
    `max_connections=${limitText(c.max_connections)}`,
    `max_packet_size=${c.max_packet_size}`,
    `max_inflight_messages=${c.max_inflight_messages}`,
    `max_queued_messages=${limitText(c.max_queued_messages)}`,
    `max_queued_bytes=${limitText(c.max_queued_bytes)}`,
    `queue_drop_policy=${c.queue_drop_policy}`,
    `max_topic_levels=${limitText(c.max_topic_levels)}`,
    `connect_timeout_ms=${c.connect_timeout_ms}`,
    `session_expiry_secs=${c.session_expiry_secs === 0 ? 'never' : c.session_expiry_secs}`,
    `open_files=${files === undefined ? 'unknown' : `${files.soft}/${files.hard} (soft/hard)`}`,
    `worker_threads=${workers}${c.worker_threads === 0 ? ' (one per core)' : ''}`,
  ].join(' ')
  logger.info(pretty ? {} : { limits }, `limits: ${text}`)
  const auth = broker.authSummary
  logger.info(pretty ? {} : { auth }, `auth: ${authText(auth)}`)
}

/** One line: `password file /etc/fbroker/passwd (3 users), ACL file … (12 rules), plugins: jwt-auth [authenticate], anonymous clients refused`. */
export function authText(auth: AuthSummary): string {
  const parts: string[] = []
  if (auth.passwordFile !== undefined) {
    parts.push(`password file ${auth.passwordFile.path} (${auth.passwordFile.users} user${auth.passwordFile.users === 1 ? '' : 's'})`)
  }
  if (auth.aclFile !== undefined) {
    parts.push(`ACL file ${auth.aclFile.path} (${auth.aclFile.rules} rule${auth.aclFile.rules === 1 ? '' : 's'})`)
  } else {
    parts.push('no ACL')
  }
  if (auth.plugins.length > 0) {
    const plugins = auth.plugins.map((p) => `${p.name} [${p.hooks.join(', ') || 'no hooks'}]`).join(', ')
    parts.push(`plugins: ${plugins}`)
  }
  if (auth.redisAuthUrl !== undefined) parts.push(`Redis credentials at ${auth.redisAuthUrl}`)
  const how = auth.allowAnonymousExplicit ? 'allow_anonymous' : 'allow_anonymous unset'
  parts.push(`anonymous clients ${auth.allowAnonymous ? 'ALLOWED' : 'refused'} (${how})`)
  return parts.join(', ')
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * `fbroker start`: loads the configuration, starts the broker, logs the
 * startup banner and installs the SIGINT/SIGTERM handlers. Resolves to an exit
 * code when it could not start, or to undefined once the broker is running
 * (the signal handlers then end the process).
 */
export async function runStart(flags: StartFlags): Promise<number | undefined> {
  let loaded: LoadedConfig
  try {
    loaded = loadConfig({
      file: flags.config,
      env: process.env,
      flags: {
        port: flags.port,
        host: flags.host,
        log_level: flags.logLevel,
        password_file: flags.passwordFile,
        acl_file: flags.aclFile,
        allow_anonymous: flags.allowAnonymous,
        plugins: flags.plugin,
      },
    })
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`)
    return err instanceof ConfigError ? EXIT_CONFIG_ERROR : EXIT_FAILURE
  }

  const { config } = loaded
  const logger = createLogger({ level: config.log_level, format: config.log_format })
  const pretty = isPretty(config.log_format, process.stdout)
  for (const warning of loaded.warnings) logger.warn(warning)

  let broker: Broker
  try {
    broker = await Broker.start({ ...loaded.toBrokerOptions(), logger })
  } catch (err) {
    logger.debug({ err }, 'start failure details')
    logger.fatal(`cannot start the broker: ${errorMessage(err)}`)
    return err instanceof ConfigError || err instanceof PluginLoadError ? EXIT_CONFIG_ERROR : EXIT_FAILURE
  }

  logBanner(logger, loaded, broker, pretty)

  let stopping = false
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`received ${signal} again, exiting without waiting for shutdown to finish`)
      process.exit(EXIT_FAILURE)
    }
    stopping = true
    logger.info(`received ${signal}, shutting down (send it again to force)`)
    broker.close().then(
      () => {
        logger.info('broker stopped')
        process.exit(0)
      },
      (err: unknown) => {
        logger.error({ err }, `error while stopping the broker: ${errorMessage(err)}`)
        process.exit(EXIT_FAILURE)
      },
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // SIGHUP re-reads the password and ACL files; a bad file keeps the old ones and never stops the broker.
  process.on('SIGHUP', () => {
    if (stopping) return
    broker.reloadAuth().then(
      (auth) => logger.info(pretty ? {} : { auth }, `received SIGHUP, auth files reloaded: ${authText(auth)}`),
      (err: unknown) =>
        logger.error({ err }, `received SIGHUP, reload failed; the previous auth files stay in force: ${errorMessage(err)}`),
    )
  })
  return undefined
}
