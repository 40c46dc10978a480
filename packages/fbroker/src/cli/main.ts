#!/usr/bin/env node
import { Command, CommanderError } from 'commander'
import { CONFIG_SCHEMA, LOG_LEVELS, envVarName } from '../config/schema'
import { VERSION } from '../version'
import { registerPasswdCommand } from './passwd'
import { EXIT_CONFIG_ERROR, runStart, type StartFlags } from './start'

function settingsHelp(): string {
  const rows = CONFIG_SCHEMA.map((spec) => [spec.key, envVarName(spec.key), JSON.stringify(spec.default)] as const)
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
    .description('start the broker (SIGINT/SIGTERM stop it gracefully)')
    .option('-c, --config <file>', 'config file: YAML (.yaml, .yml) or JSON (.json)')
    .option('-p, --port <port>', 'TCP port of the MQTT listener (0 = any free port)')
    .option('--host <host>', 'address the MQTT listener binds to')
    .option('--log-level <level>', `least severe level logged: ${LOG_LEVELS.join(', ')}`)
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
