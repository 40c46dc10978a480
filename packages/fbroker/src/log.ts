import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogFormat, LogLevel } from './config/schema'

export type { Logger } from 'pino'

export interface LoggerOptions {
  /** Least severe level written. Default `info`. */
  level?: LogLevel
  /** `pretty`, `json`, or `auto` (pretty when the destination is a terminal). Default `auto`. */
  format?: LogFormat
  /**
   * Where log lines go. Default: standard output, written synchronously so
   * nothing is lost when the process exits right after logging.
   */
  destination?: DestinationStream & { isTTY?: boolean }
}

/** Whether `format` resolves to human-readable output for this destination. */
export function isPretty(format: LogFormat, destination: { isTTY?: boolean }): boolean {
  if (format === 'pretty') return true
  if (format === 'json') return false
  return destination.isTTY === true
}

/**
 * Creates the broker's pino logger: human-readable lines (pino-pretty, run
 * synchronously in this thread, not as a worker transport) when `format` is
 * `pretty`, or `auto` and the destination is a terminal; JSON lines otherwise.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info'
  const format = options.format ?? 'auto'
  const toStdout = options.destination === undefined
  const target: DestinationStream & { isTTY?: boolean } =
    options.destination ?? Object.assign(pino.destination({ dest: 1, sync: true }), { isTTY: process.stdout.isTTY === true })

  if (!isPretty(format, target)) return pino({ level, name: 'fbroker' }, target)

  // Loaded lazily: JSON-only deployments never pay for it.
  const pinoPretty = require('pino-pretty') as typeof import('pino-pretty')
  const colorize = target.isTTY === true && (toStdout ? pinoPretty.isColorSupported : true)
  const prettify = pinoPretty.prettyFactory({
    colorize,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'pid,hostname',
  })
  const prettyStream: DestinationStream = {
    write(line: string) {
      target.write(prettify(line))
    },
  }
  return pino({ level, base: null }, prettyStream)
}

/** A logger that writes nothing (for `logger: false`). */
export function silentLogger(): Logger {
  return pino({ level: 'silent', enabled: false })
}
