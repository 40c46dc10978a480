import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, describe, test } from 'node:test'
import {
  CONFIG_SCHEMA,
  ConfigError,
  configKeyTable,
  loadConfig,
  resolveBrokerSettings,
  type FbrokerConfig,
} from 'fbroker'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-config-test-'))
after(() => rmSync(dir, { recursive: true, force: true }))

let counter = 0
/** Writes `text` to a fresh file with extension `ext` and returns its absolute path. */
function file(ext: string, text: string): string {
  const p = path.join(dir, `config-${++counter}${ext}`)
  writeFileSync(p, text)
  return p
}

/** Runs `fn`, which must throw a ConfigError, and returns that error. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err
  }
  assert.fail('expected a ConfigError, nothing was thrown')
}

const DEFAULTS: FbrokerConfig = {
  host: '0.0.0.0',
  port: 1883,
  tls_port: undefined,
  ws_port: undefined,
  wss_port: undefined,
  cert: undefined,
  key: undefined,
  cafile: undefined,
  require_certificate: false,
  use_identity_as_username: false,
  ws_path: '/mqtt',
  listeners: undefined,
  log_level: 'info',
  log_format: 'auto',
  max_connections: 100_000,
  max_packet_size: 1_048_576,
  max_inflight_messages: 20,
  max_queued_messages: 1000,
  max_queued_bytes: 0,
  queue_drop_policy: 'drop_oldest',
  max_topic_levels: 128,
  max_topic_length: 65_535,
  max_client_id_length: 65_535,
  connect_timeout_ms: 10_000,
  session_expiry_secs: 7200,
  worker_threads: 0,
  allow_anonymous: undefined,
  password_file: undefined,
  acl_file: undefined,
  plugins: [],
  auth_hook_timeout_ms: 5000,
  authorize_publish_cache_ttl_ms: 0,
  persistence: 'memory',
  redis_url: undefined,
  redis_sentinels: [],
  redis_sentinel_name: 'mymaster',
  redis_cluster_nodes: [],
  persistence_mode: 'ack_after_store',
  persistence_prefix: 'fbroker:',
  persistence_buffer_max_ops: 100_000,
  persistence_buffer_max_bytes: 67_108_864,
  redis_auth_url: undefined,
  redis_auth_prefix: 'fbroker:auth:user:',
  redis_auth_cache_ttl_ms: 5000,
}

describe('defaults and schema', () => {
  test('no file, env or flags gives the documented defaults', () => {
    const loaded = loadConfig({ env: {} })
    assert.deepEqual({ ...loaded.config }, DEFAULTS)
    assert.equal(loaded.file, undefined)
    assert.deepEqual(loaded.warnings, [])
    for (const key of Object.keys(DEFAULTS)) assert.equal(loaded.origins[key as keyof FbrokerConfig], 'default', key)
  })

  test('the resolved config is frozen', () => {
    const loaded = loadConfig({ env: {} })
    assert.ok(Object.isFrozen(loaded.config))
  })

  test('every schema entry has a unique key, a doc, and a default that passes its own validation', () => {
    const keys = CONFIG_SCHEMA.map((s) => s.key)
    assert.equal(new Set(keys).size, keys.length)
    assert.deepEqual([...keys].sort(), Object.keys(DEFAULTS).sort())
    for (const spec of CONFIG_SCHEMA) {
      assert.ok(spec.doc.length > 20, `${spec.key} needs a doc`)
      // Keys unset by default, and lists (a flag appends to them), have no default to feed back.
      if (spec.default === undefined || typeof spec.default === 'object') continue
      // Feeding each default back in as a flag must be accepted unchanged.
      const loaded = loadConfig({ env: {}, flags: { [spec.key]: String(spec.default) } })
      assert.equal(loaded.config[spec.key], spec.default, spec.key)
    }
  })

  test('configKeyTable has a row per key with its env variable and flag', () => {
    const rows = configKeyTable()
    assert.equal(rows.length, CONFIG_SCHEMA.length)
    const inflight = rows.find((r) => r.key === 'max_inflight_messages')
    assert.deepEqual(inflight && { env: inflight.env, option: inflight.option, default: inflight.default, type: inflight.type }, {
      env: 'FBROKER_MAX_INFLIGHT_MESSAGES',
      option: 'maxInflightMessages',
      default: '20',
      type: 'integer (1–65535)',
    })
    assert.equal(rows.find((r) => r.key === 'port')?.flag, '--port')
    assert.equal(rows.find((r) => r.key === 'log_level')?.flag, '--log-level')
    assert.equal(rows.find((r) => r.key === 'max_connections')?.flag, undefined)
    assert.equal(rows.find((r) => r.key === 'tls_port')?.flag, '--tls-port')
    assert.deepEqual(
      rows.filter((r) => ['tls_port', 'listeners'].includes(r.key)).map((r) => [r.key, r.type, r.default, r.literalDefault, r.env]),
      [
        ['tls_port', 'integer (0–65535)', 'none (no TLS listener)', false, 'FBROKER_TLS_PORT'],
        ['listeners', 'list of listeners', 'none: one TCP listener on `host`:`port`', false, 'FBROKER_LISTENERS'],
      ],
    )
  })

  test('toBrokerOptions converts every key to camelCase', () => {
    const options = loadConfig({ env: {}, flags: { port: '1999' } }).toBrokerOptions()
    assert.equal(options.port, 1999)
    assert.equal(options.maxInflightMessages, 20)
    assert.equal(options.sessionExpirySecs, 7200)
    assert.equal(options.connectTimeoutMs, 10_000)
    assert.equal(options.queueDropPolicy, 'drop_oldest')
    assert.equal(Object.keys(options).length, CONFIG_SCHEMA.length)
    assert.ok(Object.keys(options).every((k) => !k.includes('_')))
  })
})

describe('config files', () => {
  test('a YAML file sets keys; the rest keep their defaults', () => {
    const p = file(
      '.yaml',
      ['# fbroker', 'port: 1884', 'host: 127.0.0.1', 'max_inflight_messages: 50', 'queue_drop_policy: drop_new', 'log_level: debug', ''].join('\n'),
    )
    const loaded = loadConfig({ file: p, env: {} })
    assert.equal(loaded.file, p)
    assert.deepEqual({ ...loaded.config }, {
      ...DEFAULTS,
      port: 1884,
      host: '127.0.0.1',
      max_inflight_messages: 50,
      queue_drop_policy: 'drop_new',
      log_level: 'debug',
    })
    assert.equal(loaded.origins.port, 'file')
    assert.equal(loaded.origins.max_connections, 'default')
  })

  test('.yml is YAML too', () => {
    const loaded = loadConfig({ file: file('.yml', 'max_queued_bytes: 65536\n'), env: {} })
    assert.equal(loaded.config.max_queued_bytes, 65_536)
  })

  test('a JSON file sets keys', () => {
    const p = file('.json', JSON.stringify({ port: 8883, max_connections: 10, log_format: 'json' }))
    const loaded = loadConfig({ file: p, env: {} })
    assert.equal(loaded.config.port, 8883)
    assert.equal(loaded.config.max_connections, 10)
    assert.equal(loaded.config.log_format, 'json')
    assert.equal(loaded.config.max_inflight_messages, 20)
  })

  test('an empty YAML file means all defaults', () => {
    const loaded = loadConfig({ file: file('.yaml', '# nothing set\n'), env: {} })
    assert.deepEqual({ ...loaded.config }, DEFAULTS)
  })

  test('a relative path is resolved against the current directory', () => {
    const p = file('.yaml', 'port: 1885\n')
    const loaded = loadConfig({ file: path.relative(process.cwd(), p), env: {} })
    assert.equal(loaded.file, p)
    assert.equal(loaded.config.port, 1885)
  })
})

describe('precedence: flag > env > file > default', () => {
  const fileText = 'port: 1000\nmax_connections: 10\nlog_level: debug\nmax_queued_messages: 7\n'

  test('file beats default', () => {
    const loaded = loadConfig({ file: file('.yaml', fileText), env: {} })
    assert.equal(loaded.config.port, 1000)
    assert.equal(loaded.config.max_connections, 10)
    assert.equal(loaded.config.log_level, 'debug')
  })

  test('env beats file', () => {
    const env = { FBROKER_PORT: '2000', FBROKER_MAX_CONNECTIONS: '20', FBROKER_LOG_LEVEL: 'warn' }
    const loaded = loadConfig({ file: file('.yaml', fileText), env })
    assert.equal(loaded.config.port, 2000)
    assert.equal(loaded.config.max_connections, 20)
    assert.equal(loaded.config.log_level, 'warn')
    assert.equal(loaded.origins.port, 'env')
    // A key the environment does not set keeps the file's value.
    assert.equal(loaded.config.max_queued_messages, 7)
    assert.equal(loaded.origins.max_queued_messages, 'file')
  })

  test('flag beats env and file', () => {
    const env = { FBROKER_PORT: '2000', FBROKER_MAX_CONNECTIONS: '20', FBROKER_LOG_LEVEL: 'warn' }
    const loaded = loadConfig({ file: file('.yaml', fileText), env, flags: { port: '3000', log_level: 'error', host: undefined } })
    assert.equal(loaded.config.port, 3000)
    assert.equal(loaded.config.log_level, 'error')
    assert.equal(loaded.origins.port, 'flag')
    // Keys without a flag value keep the env's, then the file's, then the default.
    assert.equal(loaded.config.max_connections, 20)
    assert.equal(loaded.config.max_queued_messages, 7)
    assert.equal(loaded.config.host, '0.0.0.0')
    assert.equal(loaded.origins.host, 'default')
  })

  test('flags may be numbers as well as strings', () => {
    assert.equal(loadConfig({ env: {}, flags: { port: 4000 } }).config.port, 4000)
  })
})

describe('environment variables', () => {
  test('values are parsed by the key type: trimmed integers, case-insensitive enums', () => {
    const loaded = loadConfig({
      env: { FBROKER_MAX_INFLIGHT_MESSAGES: ' 42 ', FBROKER_LOG_LEVEL: 'DEBUG', FBROKER_QUEUE_DROP_POLICY: 'drop_new', FBROKER_HOST: '::1' },
    })
    assert.equal(loaded.config.max_inflight_messages, 42)
    assert.equal(loaded.config.log_level, 'debug')
    assert.equal(loaded.config.queue_drop_policy, 'drop_new')
    assert.equal(loaded.config.host, '::1')
  })

  test('an empty variable counts as unset', () => {
    const loaded = loadConfig({ env: { FBROKER_PORT: '' } })
    assert.equal(loaded.config.port, 1883)
    assert.equal(loaded.origins.port, 'default')
  })

  test('an invalid integer names the variable, the key and the value', () => {
    const err = configError(() => loadConfig({ env: { FBROKER_MAX_CONNECTIONS: 'abc' } }))
    assert.equal(
      err.message,
      'config error in environment variable FBROKER_MAX_CONNECTIONS: key "max_connections": expected a non-negative integer, got "abc"',
    )
    assert.deepEqual(err.issues[0]?.source, { kind: 'env', variable: 'FBROKER_MAX_CONNECTIONS' })
  })

  test('negative, fractional and out-of-range numbers are rejected', () => {
    for (const [variable, value] of [
      ['FBROKER_PORT', '-1'],
      ['FBROKER_PORT', '65536'],
      ['FBROKER_MAX_INFLIGHT_MESSAGES', '0'],
      ['FBROKER_MAX_PACKET_SIZE', '1.5'],
      ['FBROKER_MAX_PACKET_SIZE', '1e6'],
      ['FBROKER_MAX_CLIENT_ID_LENGTH', '0'],
      ['FBROKER_MAX_QUEUED_BYTES', '4294967296'],
    ] as const) {
      const err = configError(() => loadConfig({ env: { [variable]: value } }))
      assert.match(err.message, new RegExp(`^config error in environment variable ${variable}: key "[a-z_]+": expected `), value)
      assert.ok(err.message.includes(`got "${value}"`) || err.message.includes(`got ${value}`), err.message)
    }
  })

  test('an invalid enum value lists the allowed values', () => {
    const err = configError(() => loadConfig({ env: { FBROKER_QUEUE_DROP_POLICY: 'drop_all' } }))
    assert.match(err.message, /FBROKER_QUEUE_DROP_POLICY/)
    assert.match(err.message, /expected one of "drop_oldest", "drop_new", got "drop_all"/)
  })

  test('an FBROKER_ variable that names no key is a warning with a suggestion, not an error', () => {
    const loaded = loadConfig({ env: { FBROKER_MAX_CONECTIONS: '5', FBROKER_SOMETHING_ELSE: '1', OTHER: 'x' } })
    assert.equal(loaded.config.max_connections, 100_000)
    assert.equal(loaded.warnings.length, 2)
    assert.match(loaded.warnings[0] ?? '', /FBROKER_MAX_CONECTIONS .*did you mean FBROKER_MAX_CONNECTIONS\?/)
    assert.doesNotMatch(loaded.warnings[1] ?? '', /did you mean/)
  })

  test('env defaults to process.env', (t) => {
    t.after(() => {
      delete process.env.FBROKER_WORKER_THREADS
    })
    process.env.FBROKER_WORKER_THREADS = '3'
    assert.equal(loadConfig().config.worker_threads, 3)
  })
})

describe('errors name the key and the source', () => {
  test('an unknown key names the file, the line and the key, and suggests the near miss', () => {
    const p = file('.yaml', 'port: 1883\nmax_inflight_mesages: 5\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(err.message, `config error in ${p}:2: key "max_inflight_mesages": unknown key; did you mean "max_inflight_messages"?`)
    assert.deepEqual(err.issues[0]?.source, { kind: 'file', path: p, line: 2 })
    assert.equal(err.issues[0]?.key, 'max_inflight_mesages')
  })

  test('a key in another spelling style is recognised as a near miss', () => {
    const err = configError(() => loadConfig({ file: file('.yaml', 'maxInflightMessages: 5\n'), env: {} }))
    assert.match(err.message, /key "maxInflightMessages": unknown key; did you mean "max_inflight_messages"\?/)
  })

  test('an unknown key with no near miss lists the known keys instead', () => {
    const p = file('.json', '{"bridges": []}')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.ok(err.message.startsWith(`config error in ${p}: key "bridges": unknown key; known keys are: host, port,`), err.message)
    assert.doesNotMatch(err.message, /did you mean/)
  })

  test('a wrong type in YAML names the file, the line and the key', () => {
    const p = file('.yaml', 'port: 1883\n\nmax_inflight_messages: abc\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(err.message, `config error in ${p}:3: key "max_inflight_messages": expected an integer between 1 and 65535, got "abc"`)
  })

  test('a wrong type in JSON names the file and the key', () => {
    const p = file('.json', JSON.stringify({ max_connections: 'many' }))
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(err.message, `config error in ${p}: key "max_connections": expected a non-negative integer, got "many"`)
  })

  test('a quoted number, a fraction, a list, null and an empty host are all rejected', () => {
    const cases: Array<[string, RegExp]> = [
      ['port: "1883"', /key "port": expected an integer between 0 and 65535, got "1883" \(a string: remove the quotes\)/],
      ['max_packet_size: 1.5', /key "max_packet_size": expected an integer between 2 and 268435455, got 1\.5/],
      ['max_topic_levels: [1, 2]', /key "max_topic_levels": expected an integer between 0 and 65535, got a list/],
      ['connect_timeout_ms:', /key "connect_timeout_ms": expected a positive integer, got null/],
      ['host: ""', /key "host": expected a non-empty string without whitespace, got ""/],
      ['log_format: colourful', /key "log_format": expected one of "auto", "pretty", "json", got "colourful"/],
      ['max_packet_size: 268435456', /key "max_packet_size": expected an integer between 2 and 268435455, got 268435456/],
    ]
    for (const [text, expected] of cases) {
      const p = file('.yaml', `${text}\n`)
      const err = configError(() => loadConfig({ file: p, env: {} }))
      assert.ok(err.message.startsWith(`config error in ${p}:1: `), err.message)
      assert.match(err.message, expected)
    }
  })

  test('every problem of every source is reported at once', () => {
    const p = file('.yaml', 'port: x\nmax_conections: 1\n')
    const err = configError(() => loadConfig({ file: p, env: { FBROKER_WORKER_THREADS: 'lots' }, flags: { log_level: 'loud' } }))
    assert.equal(err.issues.length, 4)
    const lines = err.message.split('\n')
    assert.equal(lines.length, 4)
    assert.ok(lines[0]?.startsWith(`config error in ${p}:1: key "port"`))
    assert.ok(lines[1]?.startsWith(`config error in ${p}:2: key "max_conections"`))
    assert.ok(lines[2]?.startsWith('config error in environment variable FBROKER_WORKER_THREADS: key "worker_threads"'))
    assert.ok(lines[3]?.startsWith('config error in command-line flag --log-level: key "log_level"'))
  })

  test('an invalid flag value names the flag', () => {
    const err = configError(() => loadConfig({ env: {}, flags: { port: '70000' } }))
    assert.equal(err.message, 'config error in command-line flag --port: key "port": expected an integer between 0 and 65535, got 70000')
  })

  test('a YAML syntax error names the file and the line', () => {
    const p = file('.yaml', 'port: 1883\nhost: [127.0.0.1\nmax_connections: 5\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.match(err.message, new RegExp(`^config error in ${escapeRegExp(p)}:\\d+: YAML syntax error`))
    const line = (err.issues[0]?.source as { line?: number }).line
    assert.ok(line === 2 || line === 3, `line ${line}`)
  })

  test('a duplicated YAML key is a syntax error', () => {
    const p = file('.yaml', 'port: 1\nport: 2\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.match(err.message, new RegExp(`^config error in ${escapeRegExp(p)}:2: YAML syntax error`))
  })

  test('a JSON syntax error names the file and the line', () => {
    const p = file('.json', '{\n  "port": 1883,\n}\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.match(err.message, new RegExp(`^config error in ${escapeRegExp(p)}:3: JSON syntax error`))
  })

  test('a missing file is named', () => {
    const p = path.join(dir, 'does-not-exist.yaml')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(err.message, `config error in ${p}: config file not found`)
  })

  test('a top level that is not a mapping is rejected', () => {
    const p = file('.yaml', '- port: 1\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(err.message, `config error in ${p}: expected a mapping of config keys at the top level, got a list`)
  })

  test('an unsupported file extension is rejected', () => {
    const p = file('.toml', 'port = 1\n')
    const err = configError(() => loadConfig({ file: p, env: {} }))
    assert.match(err.message, /unsupported config file type "\.toml"/)
    assert.ok(err.message.startsWith(`config error in ${p}: `))
  })
})

describe('auth keys: booleans, file paths, URLs and the plugin list', () => {
  test('allow_anonymous is unset by default (decided at start) and takes true/false/1/0 from the environment and flags', () => {
    assert.equal(loadConfig({ env: {} }).config.allow_anonymous, undefined)
    for (const [text, value] of [['true', true], ['FALSE', false], [' 1 ', true], ['0', false]] as const) {
      assert.equal(loadConfig({ env: { FBROKER_ALLOW_ANONYMOUS: text } }).config.allow_anonymous, value, text)
      assert.equal(loadConfig({ env: {}, flags: { allow_anonymous: text } }).config.allow_anonymous, value, text)
    }
    assert.equal(loadConfig({ file: file('.yaml', 'allow_anonymous: false\n'), env: {} }).config.allow_anonymous, false)
  })

  test('a bad boolean names the key and the source', () => {
    const envErr = configError(() => loadConfig({ env: { FBROKER_ALLOW_ANONYMOUS: 'yes please' } }))
    assert.equal(
      envErr.message,
      'config error in environment variable FBROKER_ALLOW_ANONYMOUS: key "allow_anonymous": expected true, false, 1 or 0, got "yes please"',
    )
    const flagErr = configError(() => loadConfig({ env: {}, flags: { allow_anonymous: 'maybe' } }))
    assert.match(flagErr.message, /^config error in command-line flag --allow-anonymous: key "allow_anonymous": expected true, false, 1 or 0/)
    const p = file('.yaml', 'allow_anonymous: "true"\n')
    const fileErr = configError(() => loadConfig({ file: p, env: {} }))
    assert.equal(fileErr.message, `config error in ${p}:1: key "allow_anonymous": expected true or false, got "true" (a string: remove the quotes)`)
  })

  test('password_file and acl_file in a config file are relative to its directory; from the environment or a flag, to the current directory', () => {
    const sub = path.join(dir, 'etc')
    mkdirSync(sub, { recursive: true })
    const p = path.join(sub, 'auth.yaml')
    writeFileSync(p, 'password_file: passwd\nacl_file: ../acl file\n')
    const loaded = loadConfig({ file: p, env: {} })
    assert.equal(loaded.config.password_file, path.join(sub, 'passwd'))
    assert.equal(loaded.config.acl_file, path.join(dir, 'acl file'))
    assert.equal(loadConfig({ env: { FBROKER_PASSWORD_FILE: 'pw' } }).config.password_file, path.resolve('pw'))
    assert.equal(loadConfig({ env: {}, flags: { acl_file: '/etc/fbroker/acl' } }).config.acl_file, '/etc/fbroker/acl')
    // null in YAML means "not set".
    assert.equal(loadConfig({ file: file('.yaml', 'password_file:\n'), env: {} }).config.password_file, undefined)
  })

  test('plugins: a YAML list relative to the file, FBROKER_PLUGINS comma-separated, --plugin appended', () => {
    const sub = path.join(dir, 'plugins-conf')
    mkdirSync(sub, { recursive: true })
    const p = path.join(sub, 'fbroker.yaml')
    writeFileSync(p, 'plugins: [./a.mjs, ../b.cjs, some-package]\n')
    const fromFile = loadConfig({ file: p, env: {} })
    assert.deepEqual(fromFile.config.plugins, [path.join(sub, 'a.mjs'), path.join(dir, 'b.cjs'), 'some-package'])
    assert.ok(Object.isFrozen(fromFile.config.plugins))
    const appended = loadConfig({ file: p, env: {}, flags: { plugins: ['./c.mjs', 'd.js'] } })
    assert.deepEqual(appended.config.plugins, [path.join(sub, 'a.mjs'), path.join(dir, 'b.cjs'), 'some-package', path.resolve('c.mjs'), path.resolve('d.js')])
    assert.equal(appended.origins.plugins, 'flag')
    const env = loadConfig({ file: p, env: { FBROKER_PLUGINS: ' ./x.mjs , ,y-package ' } })
    assert.deepEqual(env.config.plugins, [path.resolve('x.mjs'), 'y-package'], 'the environment replaces the file')
    assert.deepEqual(loadConfig({ env: {}, flags: { plugins: [] } }).config.plugins, [])
  })

  test('with plugins configured, an unknown FBROKER_ variable is reported as possibly a plugin\'s', () => {
    const env = { FBROKER_JWT_SECRET: 's', FBROKER_PLUGINS: './jwt.mjs' }
    assert.deepEqual(loadConfig({ env }).warnings, ['environment variable FBROKER_JWT_SECRET is not a fbroker setting (a plugin may read it)'])
    assert.deepEqual(loadConfig({ env: { FBROKER_JWT_SECRET: 's' } }).warnings, [
      'environment variable FBROKER_JWT_SECRET is not a fbroker setting and is ignored',
    ])
  })

  test('plugins that are not a list of strings name the key and the source', () => {
    const p = file('.yaml', 'plugins: ./one.mjs\n')
    assert.equal(
      configError(() => loadConfig({ file: p, env: {} })).message,
      `config error in ${p}:1: key "plugins": expected a list of module paths or package names, got "./one.mjs" (write a list: ["./one.mjs"])`,
    )
    const q = file('.yaml', 'plugins: [./a.mjs, 3]\n')
    assert.match(configError(() => loadConfig({ file: q, env: {} })).message, /key "plugins": expected a list of module paths or package names, got 3 at position 2/)
  })

  test('redis_auth_url must be a redis:// or rediss:// URL; the password is not echoed in errors', () => {
    assert.equal(loadConfig({ env: { FBROKER_REDIS_AUTH_URL: 'redis://127.0.0.1:6380/2' } }).config.redis_auth_url, 'redis://127.0.0.1:6380/2')
    const err = configError(() => loadConfig({ env: { FBROKER_REDIS_AUTH_URL: 'http://user:hunter2@example.com' } }))
    assert.match(err.message, /^config error in environment variable FBROKER_REDIS_AUTH_URL: key "redis_auth_url": expected a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/user:\*\*\*@example.com\/"$/)
    assert.doesNotMatch(err.message, /hunter2/)
  })

  test('persistence: redis names its store one way: redis_url, redis_sentinels or redis_cluster_nodes (host:port lists), with errors naming the key and the file', () => {
    const ok = loadConfig({ file: file('.yaml', 'persistence: redis\nredis_sentinels: ["10.0.0.5:26379", "[::1]:26380", s3.example:26381]\nredis_sentinel_name: prod\n'), env: {} })
    assert.deepEqual(ok.config.redis_sentinels, ['10.0.0.5:26379', '[::1]:26380', 's3.example:26381'])
    assert.equal(ok.config.redis_sentinel_name, 'prod')
    assert.deepEqual(ok.toBrokerOptions().redisSentinels, ['10.0.0.5:26379', '[::1]:26380', 's3.example:26381'])
    const fromEnv = loadConfig({ env: { FBROKER_PERSISTENCE: 'redis', FBROKER_REDIS_CLUSTER_NODES: '127.0.0.1:7000, 127.0.0.1:7001' } })
    assert.deepEqual(fromEnv.config.redis_cluster_nodes, ['127.0.0.1:7000', '127.0.0.1:7001'])
    const fromFlag = loadConfig({ env: {}, flags: { persistence: 'redis', redis_cluster_nodes: 'h:7000' } })
    assert.deepEqual(fromFlag.config.redis_cluster_nodes, ['h:7000'])

    const badPort = file('.yaml', 'persistence: redis\nredis_cluster_nodes: ["h:7000", "h:70000"]\n')
    assert.equal(
      configError(() => loadConfig({ file: badPort, env: {} })).message,
      `config error in ${badPort}:2: key "redis_cluster_nodes": expected a list of addresses such as "10.0.0.5:26379" or "[::1]:7000", got "h:70000" at position 2`,
    )
    const notList = file('.yaml', 'redis_sentinels: "h:1"\n')
    assert.match(configError(() => loadConfig({ file: notList, env: {} })).message, /key "redis_sentinels": expected a list of addresses .* \(write a list: \["h:1"\]\)$/)
    const noPort = file('.yaml', 'redis_sentinels: [h]\n')
    assert.match(configError(() => loadConfig({ file: noPort, env: {} })).message, /got "h" at position 1/)
    const both = file('.yaml', 'persistence: redis\nredis_sentinels: ["a:1"]\nredis_cluster_nodes: ["b:2"]\n')
    assert.equal(
      configError(() => loadConfig({ file: both, env: {} })).message,
      `config error in ${both}:3: key "redis_cluster_nodes": cannot be combined with redis_sentinels: a store is either a Sentinel-monitored master or a Cluster`,
    )
    const none = file('.yaml', 'persistence: redis\n')
    assert.equal(
      configError(() => loadConfig({ file: none, env: {} })).message,
      `config error in ${none}:1: key "redis_url": required when persistence is redis (or set redis_sentinels or redis_cluster_nodes)`,
    )
    // Memory persistence does not need any of them.
    assert.equal(loadConfig({ env: {}, flags: { persistence: 'memory' } }).config.persistence, 'memory')
  })

  test('the hook timeout and the publish cache TTL are validated like other integers', () => {
    const err = configError(() => loadConfig({ env: { FBROKER_AUTH_HOOK_TIMEOUT_MS: '0' } }))
    assert.match(err.message, /key "auth_hook_timeout_ms": expected a positive integer, got 0$/)
    assert.equal(loadConfig({ env: { FBROKER_AUTHORIZE_PUBLISH_CACHE_TTL_MS: '250' } }).config.authorize_publish_cache_ttl_ms, 250)
  })

  test('Broker options take camelCase auth keys; plugins is validated by Broker.start (it also takes plugin objects)', () => {
    const settings = resolveBrokerSettings({ allowAnonymous: false, passwordFile: 'pw', redisAuthCacheTtlMs: 0 })
    assert.equal(settings.allowAnonymous, false)
    assert.equal(settings.passwordFile, 'pw')
    assert.equal(settings.redisAuthCacheTtlMs, 0)
    assert.match(configError(() => resolveBrokerSettings({ allowAnonymous: 'no' })).message, /key "allowAnonymous": expected true or false, got "no"/)
  })

  test('the README table shows unset defaults as prose, not as a literal', () => {
    const rows = configKeyTable()
    const anon = rows.find((r) => r.key === 'allow_anonymous')!
    assert.equal(anon.literalDefault, false)
    assert.match(anon.default, /^auto: `false` when an auth source is configured/)
    assert.equal(anon.flag, '--allow-anonymous')
    assert.deepEqual(
      rows.filter((r) => ['password_file', 'acl_file', 'redis_auth_url'].includes(r.key)).map((r) => [r.default, r.literalDefault]),
      [['none', false], ['none', false], ['none', false]],
    )
    assert.equal(rows.find((r) => r.key === 'plugins')?.flag, '--plugin')
  })
})

describe('Broker options validation', () => {
  test('fills in defaults and keeps given values', () => {
    const settings = resolveBrokerSettings({ port: 0, maxInflightMessages: 3, logger: undefined }, ['logger'])
    assert.equal(settings.port, 0)
    assert.equal(settings.maxInflightMessages, 3)
    assert.equal(settings.maxConnections, 100_000)
  })

  test('an unknown option suggests the camelCase name', () => {
    const err = configError(() => resolveBrokerSettings({ max_inflight_messages: 3 }))
    assert.equal(err.message, 'config error in Broker options: key "max_inflight_messages": unknown option; did you mean "maxInflightMessages"?')
  })

  test('a value of the wrong type is rejected', () => {
    const err = configError(() => resolveBrokerSettings({ port: '1883' }))
    assert.match(err.message, /^config error in Broker options: key "port": expected an integer between 0 and 65535, got "1883"/)
  })
})

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
