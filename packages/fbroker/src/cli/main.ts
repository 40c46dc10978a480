#!/usr/bin/env node
import { Command, CommanderError } from 'commander'
import { CONFIG_SCHEMA, LOG_LEVELS, defaultText, envVarName, type ConfigKeySpec } from '../config/schema'
import { VERSION } from '../version'
import { registerPasswdCommand } from './passwd'
import { EXIT_CONFIG_ERROR, runStart, type StartFlags } from './start'

function settingsHelp(): string {
  const rows = (CONFIG_SCHEMA as readonly ConfigKeySpec[]).map((spec) => [spec.key, envVarName(spec.key), defaultText(spec).text.replace(/`/g, '')] as const)
  const keyWidth = Math.max(...rows.map((r) => r[0].length))
  const envWidth = Math.max(...rows.map((r) => r[1].length))
  const lines = rows.map(([key, env, def]) => `  ${key.padEnd(keyWidth)}  ${env.padEnd(envWidth)}  ${def}`)
  return [
    '',
    'Settings (config file key, environment variable, default):',
    ...lines,
    '',
    'The config file is YAML (.yaml, .yml) or JSON (.json), with the keys above.',
    'Precedence: command-line flags > FBROKER_* environment variables > config file > defaults.',
    '--plugin is the exception: it appends to the plugins of the file or FBROKER_PLUGINS (comma-separated).',
    '',
    'Listeners: MQTT over TCP on --host:--port, plus TLS, WebSocket and secure WebSocket on --host',
    'at --tls-port, --ws-port and --wss-port when given (TLS ones need --cert and --key).',
    'A config file with a listeners list replaces the TCP listener on port 1883; --port (or port',
    'set anywhere) adds it back. See docs/listeners.md.',
  ].join('\n')
}

/** The `fbroker` command-line program. */
export function buildProgram(): Command {
  const program = new Command('fbroker')
  program
    .description('fbroker: an MQTT broker with a native (Rust) core')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show help')
    .exitOverride() // inherited by the subcommands below: usage errors exit with 2, see main()

  program
    .command('start')
    .description('start the broker (SIGINT/SIGTERM stop it gracefully, SIGHUP re-reads the password and ACL files and the TLS certificates)')
    .option('-c, --config <file>', 'config file: YAML (.yaml, .yml) or JSON (.json)')
    .option('-p, --port <port>', 'TCP port of the MQTT listener (0 = any free port)')
    .option('--host <host>', 'address the MQTT listeners bind to')
    .option('--tls-port <port>', 'port of an MQTT-over-TLS listener (needs --cert and --key)')
    .option('--ws-port <port>', 'port of an MQTT-over-WebSocket listener')
    .option('--wss-port <port>', 'port of an MQTT-over-secure-WebSocket listener (needs --cert and --key)')
    .option('--cert <file>', 'PEM server certificate (and chain) of the TLS listeners (re-read on SIGHUP)')
    .option('--key <file>', 'PEM private key of --cert (re-read on SIGHUP)')
    .option('--cafile <file>', 'PEM CA certificates that client certificates are verified against')
    .option('--require-certificate [true|false]', 'refuse TLS clients without a certificate verified against --cafile')
    .option('--ws-path <path>', 'HTTP path of the WebSocket listeners (default /mqtt)')
    .option('--persistence <backend>', 'where durable state lives: memory (default, nothing survives a restart) or redis (needs --redis-url)')
    .option('--redis-url <url>', 'Redis of --persistence redis: redis://[[user]:password@]host[:port][/db]')
    .option('--redis-sentinels <host:port,...>', 'Redis Sentinel of --persistence redis: the sentinels (the master name is redis_sentinel_name, default mymaster)')
    .option('--redis-cluster-nodes <host:port,...>', 'Redis Cluster of --persistence redis: some of its nodes')
    .option('--log-level <level>', `least severe level logged: ${LOG_LEVELS.join(', ')}`)
    .option('--password-file <file>', 'Mosquitto-format password file (re-read on SIGHUP)')
    .option('--acl-file <file>', 'Mosquitto-format ACL file (re-read on SIGHUP)')
    .option('--allow-anonymous <true|false>', 'accept clients no credential source vouched for (default: false when an auth source is configured)')
    .option('--plugin <file>', 'auth plugin module; repeatable, appended to the config file\'s plugins', (value: string, previous: string[] = []) => [...previous, value])
    .addHelpText('after', settingsHelp())
    .action(async (flags: StartFlags) => {
      const code = await runStart(flags)
      if (code !== undefined) process.exit(code)
    })

  registerPasswdCommand(program)

  return program
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv as string[])
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed the help, version or error message.
      process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG_ERROR)
    }
    process.stderr.write(`fbroker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  }
}

if (require.main === module) void main(process.argv)
