import { availableParallelism } from 'node:os'
import { PluginLoadError } from '../auth/plugins'
import { Broker, type AuthSummary, type BoundListener } from '../broker'
import { ConfigError } from '../config/errors'
import { loadConfig, type LoadedConfig } from '../config/load'
import { createLogger, isPretty, type Logger } from '../log'
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
  tlsPort?: string
  wsPort?: string
  wssPort?: string
  cert?: string
  key?: string
  cafile?: string
  /** `--require-certificate` alone is true; it may also take `true`/`false`. */
  requireCertificate?: string | boolean
  wsPath?: string
  persistence?: string
  redisUrl?: string
  redisSentinels?: string
  redisClusterNodes?: string
}

/** Exit code for configuration and usage errors. */
export const EXIT_CONFIG_ERROR = 2
/** Exit code when the broker cannot start or stop cleanly. */
export const EXIT_FAILURE = 1

const URL_SCHEMES: Readonly<Record<string, string>> = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }

/** `mqtt://0.0.0.0:1883`, `mqtts://…:8883`, `ws://…:8080/mqtt`: what a client connects to. */
export function listenerUrl(listener: BoundListener): string {
  const scheme = URL_SCHEMES[listener.protocol] ?? listener.protocol
  const host = listener.host.includes(':') ? `[${listener.host}]` : listener.host
  const path = listener.protocol === 'ws' || listener.protocol === 'wss' ? (listener.path ?? '') : ''
  return `${scheme}://${host}:${listener.port}${path}`
}

/** The startup line of a listener: `listening on mqtts://0.0.0.0:8883 (mqtt tls, client certificate required)`. */
export function listenerText(listener: BoundListener): string {
  const notes = [`mqtt ${listener.protocol}`]
  if (listener.requireCertificate) notes.push('client certificate required')
  if (listener.useIdentityAsUsername) notes.push('certificate CN as user name')
  if (listener.proxyProtocol) notes.push('PROXY protocol')
  if (listener.maxConnections !== undefined && listener.maxConnections > 0) notes.push(`max_connections=${listener.maxConnections}`)
  return `listening on ${listenerUrl(listener)} (${notes.join(', ')})`
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
    const fields = { listener: listenerUrl(listener), protocol: listener.protocol, host: listener.host, port: listener.port }
    logger.info(pretty ? {} : fields, listenerText(listener))
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

/** The TLS part of SIGHUP: one error line per listener that kept its previous certificate. */
export function reloadTlsOnSignal(broker: Pick<Broker, 'reloadTls' | 'boundListeners'>, logger: Logger): void {
  const tls = broker.boundListeners.filter((l) => l.protocol === 'tls' || l.protocol === 'wss')
  if (tls.length === 0) return
  let errors: string[]
  try {
    errors = broker.reloadTls()
  } catch (err) {
    logger.error({ err }, `received SIGHUP, TLS reload failed; every TLS listener keeps its previous certificate: ${errorMessage(err)}`)
    return
  }
  for (const error of errors) {
    logger.error(`received SIGHUP, TLS reload failed; the listener keeps its previous certificate: ${error}`)
  }
  const reloaded = tls.length - errors.length
  if (reloaded > 0) logger.info(`received SIGHUP, TLS certificates reloaded: ${reloaded} of ${tls.length} TLS listener${tls.length === 1 ? '' : 's'}`)
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
        tls_port: flags.tlsPort,
        ws_port: flags.wsPort,
        wss_port: flags.wssPort,
        cert: flags.cert,
        key: flags.key,
        cafile: flags.cafile,
        require_certificate: flags.requireCertificate,
        ws_path: flags.wsPath,
        persistence: flags.persistence,
        redis_url: flags.redisUrl,
        redis_sentinels: flags.redisSentinels,
        redis_cluster_nodes: flags.redisClusterNodes,
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
  // SIGHUP re-reads the password and ACL files, and the TLS certificates; a bad file keeps the old
  // one in force and never stops the broker or drops a connection.
  process.on('SIGHUP', () => {
    if (stopping) return
    broker.reloadAuth().then(
      (auth) => logger.info(pretty ? {} : { auth }, `received SIGHUP, auth files reloaded: ${authText(auth)}`),
      (err: unknown) =>
        logger.error({ err }, `received SIGHUP, reload failed; the previous auth files stay in force: ${errorMessage(err)}`),
    )
    reloadTlsOnSignal(broker, logger)
  })
  return undefined
}
