// Listeners: the `listeners` list, the top-level port keys and flags, the
// rule that combines them, every error (naming the key path and the file),
// and the mapping to the native binding's listener config.
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, describe, test } from 'node:test'
import { Broker, ConfigError, loadConfig, resolveBrokerSettings } from 'fbroker'
import { LISTENER_KEY_SCHEMA, listenerKeyTable, resolveListeners, type ResolvedListener } from 'fbroker/dist/config/listeners'
import { toNativeListener } from 'fbroker/dist/native'

const root = path.resolve(__dirname, '..', '..')
const bindingDir = path.join(root, 'packages', 'binding')
const bindingBuilt = existsSync(bindingDir) && readdirSync(bindingDir).some((f) => f.endsWith('.node'))

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-listeners-test-'))
after(() => rmSync(dir, { recursive: true, force: true }))

// Load-time checks only need the files to exist and be readable; their PEM content is the native core's business.
const certs = path.join(dir, 'certs')
mkdirSync(certs)
for (const name of ['server.pem', 'server.key', 'ca.pem']) writeFileSync(path.join(certs, name), `dummy ${name}\n`)
const CERT = path.join(certs, 'server.pem')
const KEY = path.join(certs, 'server.key')
const CA = path.join(certs, 'ca.pem')

let counter = 0
/** Writes `text` to a fresh file in `dir` and returns its absolute path. */
function file(ext: string, text: string): string {
  const p = path.join(dir, `listeners-${++counter}${ext}`)
  writeFileSync(p, text)
  return p
}

function yaml(...lines: string[]): string {
  return file('.yaml', `${lines.join('\n')}\n`)
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err
  }
  assert.fail('expected a ConfigError, nothing was thrown')
}

/** The message lines of the ConfigError that `loadConfig` throws for this file / env / flags. */
function loadErrors(options: Parameters<typeof loadConfig>[0]): string[] {
  return configError(() => loadConfig(options)).message.split('\n')
}

/** [type, host, port, origin] of each listener, the short form most tests compare. */
function brief(listeners: readonly ResolvedListener[]): Array<[string, string, number, string]> {
  return listeners.map((l) => [l.type, l.host, l.port, l.origin])
}

describe('the listeners list in a config file', () => {
  test('every type, with defaults filled in: host from the top level, ws path /mqtt, relative paths from the file', () => {
    const p = yaml(
      'host: 127.0.0.1',
      'listeners:',
      '  - type: tcp',
      '    port: 1883',
      '  - type: tls',
      '    port: 8883',
      '    cert: certs/server.pem',
      '    key: certs/server.key',
      '    cafile: certs/ca.pem',
      '    require_certificate: true',
      '    use_identity_as_username: true',
      '  - type: ws',
      '    host: "::"',
      '    port: 8080',
      '    allowed_origins: [https://App.Example.com/, "http://localhost:3000"]',
      '  - type: wss',
      '    port: 8081',
      '    cert: certs/server.pem',
      '    key: certs/server.key',
      '    path: /broker',
      '    max_connections: 500',
      '    proxy_protocol: true',
    )
    const loaded = loadConfig({ file: p, env: {} })
    assert.deepEqual(loaded.config.listeners, [
      { type: 'tcp', host: '127.0.0.1', port: 1883, max_connections: 0, proxy_protocol: false },
      {
        type: 'tls',
        host: '127.0.0.1',
        port: 8883,
        max_connections: 0,
        proxy_protocol: false,
        cert: CERT,
        key: KEY,
        cafile: CA,
        require_certificate: true,
        use_identity_as_username: true,
      },
      {
        type: 'ws',
        host: '::',
        port: 8080,
        max_connections: 0,
        proxy_protocol: false,
        path: '/mqtt',
        allowed_origins: ['https://app.example.com', 'http://localhost:3000'],
      },
      {
        type: 'wss',
        host: '127.0.0.1',
        port: 8081,
        max_connections: 500,
        proxy_protocol: true,
        cert: CERT,
        key: KEY,
        require_certificate: false,
        use_identity_as_username: false,
        path: '/broker',
        allowed_origins: [],
      },
    ])
    assert.equal(loaded.origins.listeners, 'file')
    // The list replaces the implicit TCP listener on port 1883 (here the list has its own).
    assert.deepEqual(brief(loaded.listeners), [
      ['tcp', '127.0.0.1', 1883, 'listeners[0]'],
      ['tls', '127.0.0.1', 8883, 'listeners[1]'],
      ['ws', '::', 8080, 'listeners[2]'],
      ['wss', '127.0.0.1', 8081, 'listeners[3]'],
    ])
    assert.ok(Object.isFrozen(loaded.listeners) && Object.isFrozen(loaded.listeners[0]))
    assert.ok(Object.isFrozen(loaded.config.listeners?.[2]?.allowed_origins))
  })

  test('a JSON file takes the same list', () => {
    const p = file('.json', JSON.stringify({ listeners: [{ type: 'ws', port: 9001, path: '/' }] }))
    const loaded = loadConfig({ file: p, env: {} })
    assert.deepEqual(loaded.listeners, [
      { type: 'ws', host: '0.0.0.0', port: 9001, maxConnections: 0, proxyProtocol: false, path: '/', allowedOrigins: [], origin: 'listeners[0]' },
    ])
  })

  test('items without a host take the final top-level host, whichever source set it', () => {
    const p = yaml('host: 127.0.0.1', 'listeners:', '  - {type: tcp, port: 1884}', '  - {type: ws, port: 8080, host: 10.0.0.1}')
    assert.deepEqual(brief(loadConfig({ file: p, env: {}, flags: { host: '::1' } }).listeners), [
      ['tcp', '::1', 1884, 'listeners[0]'],
      ['ws', '10.0.0.1', 8080, 'listeners[1]'],
    ])
    assert.equal(loadConfig({ file: p, env: { FBROKER_HOST: '192.168.0.2' } }).config.listeners?.[0]?.host, '192.168.0.2')
  })

  test('FBROKER_LISTENERS holds the list as JSON and replaces the file\'s; relative paths are from the current directory', () => {
    const p = yaml('listeners:', '  - {type: tcp, port: 1884}')
    const env = { FBROKER_LISTENERS: JSON.stringify([{ type: 'tls', port: 8883, cert: path.relative(process.cwd(), CERT), key: KEY }]) }
    const loaded = loadConfig({ file: p, env })
    assert.equal(loaded.origins.listeners, 'env')
    assert.deepEqual(brief(loaded.listeners), [['tls', '0.0.0.0', 8883, 'listeners[0]']])
    assert.equal(loaded.listeners[0]?.cert, CERT)
  })

  test('null means not set', () => {
    const loaded = loadConfig({ file: yaml('listeners:'), env: {} })
    assert.equal(loaded.config.listeners, undefined)
    assert.deepEqual(brief(loaded.listeners), [['tcp', '0.0.0.0', 1883, 'port']])
  })
})

describe('the top-level port keys and flags, and how they combine with a list', () => {
  test('by default: one TCP listener on host:port', () => {
    assert.deepEqual(loadConfig({ env: {} }).listeners, [
      { type: 'tcp', host: '0.0.0.0', port: 1883, maxConnections: 0, proxyProtocol: false, origin: 'port' },
    ])
  })

  test('--tls-port, --ws-port and --wss-port add their listeners on --host, with --cert, --key, --cafile, --require-certificate and --ws-path', () => {
    const loaded = loadConfig({
      env: {},
      flags: {
        host: '127.0.0.1',
        port: '1884',
        tls_port: '8883',
        ws_port: '8080',
        wss_port: '8081',
        cert: CERT,
        key: KEY,
        cafile: CA,
        require_certificate: true,
        ws_path: '/ws',
      },
    })
    assert.deepEqual(loaded.listeners, [
      { type: 'tcp', host: '127.0.0.1', port: 1884, maxConnections: 0, proxyProtocol: false, origin: 'port' },
      {
        type: 'tls',
        host: '127.0.0.1',
        port: 8883,
        maxConnections: 0,
        proxyProtocol: false,
        cert: CERT,
        key: KEY,
        cafile: CA,
        requireCertificate: true,
        useIdentityAsUsername: false,
        origin: 'tls_port',
      },
      { type: 'ws', host: '127.0.0.1', port: 8080, maxConnections: 0, proxyProtocol: false, path: '/ws', allowedOrigins: [], origin: 'ws_port' },
      {
        type: 'wss',
        host: '127.0.0.1',
        port: 8081,
        maxConnections: 0,
        proxyProtocol: false,
        cert: CERT,
        key: KEY,
        cafile: CA,
        requireCertificate: true,
        useIdentityAsUsername: false,
        path: '/ws',
        allowedOrigins: [],
        origin: 'wss_port',
      },
    ])
  })

  test('the same keys work from the environment and the file, with the usual precedence', () => {
    const p = yaml('tls_port: 8883', `cert: ${CERT}`, `key: ${KEY}`, 'use_identity_as_username: true', `cafile: ${CA}`, 'require_certificate: true')
    const fromFile = loadConfig({ file: p, env: {} })
    assert.deepEqual(brief(fromFile.listeners), [
      ['tcp', '0.0.0.0', 1883, 'port'],
      ['tls', '0.0.0.0', 8883, 'tls_port'],
    ])
    assert.equal(fromFile.listeners[1]?.useIdentityAsUsername, true)
    const overridden = loadConfig({ file: p, env: { FBROKER_TLS_PORT: '9883', FBROKER_WS_PORT: '9080' }, flags: { tls_port: '10883' } })
    assert.deepEqual(brief(overridden.listeners), [
      ['tcp', '0.0.0.0', 1883, 'port'],
      ['tls', '0.0.0.0', 10883, 'tls_port'],
      ['ws', '0.0.0.0', 9080, 'ws_port'],
    ])
    assert.equal(overridden.origins.tls_port, 'flag')
    assert.equal(overridden.origins.ws_port, 'env')
  })

  test('a list replaces the implicit TCP listener on 1883; port set anywhere adds it back; port keys always add theirs', () => {
    const p = yaml('listeners:', '  - {type: ws, port: 8080}')
    assert.deepEqual(brief(loadConfig({ file: p, env: {} }).listeners), [['ws', '0.0.0.0', 8080, 'listeners[0]']])
    const withPortInFile = yaml('port: 1883', 'listeners:', '  - {type: ws, port: 8080}')
    assert.deepEqual(brief(loadConfig({ file: withPortInFile, env: {} }).listeners), [
      ['tcp', '0.0.0.0', 1883, 'port'],
      ['ws', '0.0.0.0', 8080, 'listeners[0]'],
    ])
    assert.deepEqual(brief(loadConfig({ file: p, env: { FBROKER_PORT: '1999' } }).listeners)[0], ['tcp', '0.0.0.0', 1999, 'port'])
    assert.deepEqual(brief(loadConfig({ file: p, env: {}, flags: { port: '1884' } }).listeners)[0], ['tcp', '0.0.0.0', 1884, 'port'])
    assert.deepEqual(brief(loadConfig({ file: p, env: {}, flags: { tls_port: '8883', cert: CERT, key: KEY } }).listeners), [
      ['tls', '0.0.0.0', 8883, 'tls_port'],
      ['ws', '0.0.0.0', 8080, 'listeners[0]'],
    ])
  })

  test('toBrokerOptions leaves port out when a list is set and port is not, so Broker.start opens what loadConfig listed', () => {
    const p = yaml('listeners:', '  - {type: ws, port: 8080, allowed_origins: ["https://a.example"]}')
    const options = loadConfig({ file: p, env: {} }).toBrokerOptions()
    assert.equal(options.port, undefined)
    assert.deepEqual(options.listeners, [
      { type: 'ws', host: '0.0.0.0', port: 8080, maxConnections: 0, proxyProtocol: false, path: '/mqtt', allowedOrigins: ['https://a.example'] },
    ])
    assert.equal(loadConfig({ file: p, env: {}, flags: { port: '1884' } }).toBrokerOptions().port, 1884)
    assert.equal(loadConfig({ env: {} }).toBrokerOptions().port, 1883)
    // What Broker.start would open from those options is what loadConfig said.
    for (const loaded of [loadConfig({ file: p, env: {} }), loadConfig({ file: p, env: {}, flags: { port: '1884', tls_port: '8883', cert: CERT, key: KEY } })]) {
      const options = loaded.toBrokerOptions()
      const settings = resolveBrokerSettings(options)
      const fromOptions = resolveListeners(settings, options.port !== undefined)
      assert.deepEqual(
        fromOptions.map(({ origin: _, ...l }) => l),
        loaded.listeners.map(({ origin: _, ...l }) => l),
      )
    }
  })

  test('port 0 may be used by several listeners (each gets its own ephemeral port)', () => {
    const loaded = loadConfig({ env: {}, flags: { port: '0', ws_port: '0' } })
    assert.deepEqual(brief(loaded.listeners), [
      ['tcp', '0.0.0.0', 0, 'port'],
      ['ws', '0.0.0.0', 0, 'ws_port'],
    ])
  })
})

describe('listener errors name the key path and the source', () => {
  test('an unknown item key suggests the near miss and names the line', () => {
    const p = yaml('listeners:', '  - type: tls', '    port: 8883', `    cert: ${CERT}`, `    key: ${KEY}`, '    proxyprotocol: true', '    sert: x')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:6: key "listeners[0].proxyprotocol": unknown key; did you mean "proxy_protocol"?`,
      `config error in ${p}:7: key "listeners[0].sert": unknown key; did you mean "cert"?`,
    ])
  })

  test('type and port are required; a bad type or port is named', () => {
    const p = yaml('listeners:', '  - port: 1', '  - type: mqtts', '    port: 2', '  - type: tcp', '  - type: tcp', '    port: 70000')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:2: key "listeners[0].type": required: one of "tcp", "tls", "ws", "wss"`,
      `config error in ${p}:3: key "listeners[1].type": expected one of "tcp", "tls", "ws", "wss", got "mqtts"`,
      `config error in ${p}:5: key "listeners[2].port": required: the port to listen on (0 = any free port)`,
      `config error in ${p}:7: key "listeners[3].port": expected an integer between 0 and 65535, got 70000`,
    ])
  })

  test('a tls or wss listener needs cert and key', () => {
    const p = yaml('listeners:', '  - {type: tcp, port: 1883}', '  - {type: tcp, port: 1884}', '  - type: tls', '    port: 8883', '  - type: wss', '    port: 8884', `    cert: ${CERT}`)
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:4: key "listeners[2].cert": required for a tls listener`,
      `config error in ${p}:4: key "listeners[2].key": required for a tls listener`,
      `config error in ${p}:6: key "listeners[3].key": required for a wss listener`,
    ])
  })

  test('keys of another listener type are errors', () => {
    const p = yaml('listeners:', '  - type: tcp', '    port: 1883', `    cert: ${CERT}`, '  - type: tls', '    port: 8883', `    cert: ${CERT}`, `    key: ${KEY}`, '    path: /mqtt', '    allowed_origins: []')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:4: key "listeners[0].cert": not used by a tcp listener (only by tls and wss listeners)`,
      `config error in ${p}:9: key "listeners[1].path": not used by a tls listener (only by ws and wss listeners)`,
      `config error in ${p}:10: key "listeners[1].allowed_origins": not used by a tls listener (only by ws and wss listeners)`,
    ])
  })

  test('require_certificate and use_identity_as_username need cafile', () => {
    const p = yaml('listeners:', '  - type: wss', '    port: 8883', `    cert: ${CERT}`, `    key: ${KEY}`, '    require_certificate: true', '    use_identity_as_username: true')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:6: key "listeners[0].require_certificate": needs cafile: the CA certificates that client certificates are verified against`,
      `config error in ${p}:7: key "listeners[0].use_identity_as_username": needs cafile: the CA certificates that client certificates are verified against`,
    ])
  })

  test('path must start with "/"; allowed_origins must be a list of origins', () => {
    const p = yaml(
      'listeners:',
      '  - {type: ws, port: 8080, path: mqtt}',
      '  - {type: ws, port: 8081, path: "/a b"}',
      '  - {type: ws, port: 8082, allowed_origins: "https://a.example"}',
      '  - {type: ws, port: 8083, allowed_origins: ["https://a.example/path"]}',
      '  - {type: ws, port: 8084, allowed_origins: ["*", "http://[::1]:8080"]}',
    )
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:2: key "listeners[0].path": expected a URL path starting with "/" (no spaces, query or fragment), got "mqtt"`,
      `config error in ${p}:3: key "listeners[1].path": expected a URL path starting with "/" (no spaces, query or fragment), got "/a b"`,
      `config error in ${p}:4: key "listeners[2].allowed_origins": expected a list of origins such as "https://example.com" (or "*"), got "https://a.example" (write a list: ["https://a.example"])`,
      `config error in ${p}:5: key "listeners[3].allowed_origins": expected a list of origins such as "https://example.com" (or "*"), got "https://a.example/path" at position 1`,
    ])
    const ok = yaml('listeners:', '  - {type: ws, port: 8084, allowed_origins: ["*", "http://[::1]:8080", "HTTPS://X.example:443"]}')
    assert.deepEqual(loadConfig({ file: ok, env: {} }).listeners[0]?.allowedOrigins, ['*', 'http://[::1]:8080', 'https://x.example'])
  })

  test('a list that is not a list, and items that are not mappings', () => {
    const p = yaml('listeners:', '  type: tcp', '  port: 1883')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:1: key "listeners": expected a list of listeners (mappings with at least "type" and "port"), got a mapping (write a list: one "- type: …" entry per listener)`,
    ])
    const q = yaml('listeners:', '  - tcp', '  - {type: tcp, port: 1}')
    assert.deepEqual(loadErrors({ file: q, env: {} }), [`config error in ${q}:2: key "listeners[0]": expected a mapping with at least "type" and "port", got "tcp"`])
  })

  test('an empty list with no port key leaves no listener: an error', () => {
    const p = yaml('listeners: []')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:1: key "listeners": the list is empty and none of port, tls_port, ws_port, wss_port is set: the broker would have no listener`,
    ])
    assert.deepEqual(brief(loadConfig({ file: p, env: {}, flags: { ws_port: '8080' } }).listeners), [['ws', '0.0.0.0', 8080, 'ws_port']])
  })

  test('two listeners on one host:port are an error naming both; a wildcard address covers the specific ones', () => {
    const p = yaml('host: 127.0.0.1', 'listeners:', '  - {type: tcp, port: 1883}', '  - {type: ws, port: 1883}', '  - {type: ws, port: 8080, host: 0.0.0.0}', '  - {type: ws, port: 8080, host: "::1"}')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:4: key "listeners[1].port": 127.0.0.1:1883 is already used by listeners[0].port, on 127.0.0.1:1883; give each listener its own port`,
    ])
    const q = yaml('listeners:', '  - {type: ws, port: 8080}', '  - {type: tcp, port: 8080, host: 192.168.1.5}')
    assert.deepEqual(loadErrors({ file: q, env: {} }), [
      `config error in ${q}:3: key "listeners[1].port": 192.168.1.5:8080 is already used by listeners[0].port, on 0.0.0.0:8080 (0.0.0.0 covers every IPv4 address); give each listener its own port`,
    ])
  })

  test('a port key that clashes with the TCP port or with a list item is named with its source', () => {
    assert.deepEqual(loadErrors({ env: {}, flags: { tls_port: '1883', cert: CERT, key: KEY } }), [
      'config error in command-line flag --tls-port: key "tls_port": 0.0.0.0:1883 is already used by port, on 0.0.0.0:1883; give each listener its own port',
    ])
    const p = yaml('listeners:', '  - {type: ws, port: 8080}')
    assert.deepEqual(loadErrors({ file: p, env: { FBROKER_WS_PORT: '8080' } }), [
      `config error in ${p}:2: key "listeners[0].port": 0.0.0.0:8080 is already used by ws_port, on 0.0.0.0:8080; give each listener its own port`,
    ])
  })

  test('--tls-port and --wss-port without --cert/--key name the missing key and where the port came from', () => {
    assert.deepEqual(loadErrors({ env: {}, flags: { tls_port: '8883' } }), [
      'config error in command-line flag --tls-port: key "cert": required when tls_port is set (set it with --cert, FBROKER_CERT or cert in the config file)',
      'config error in command-line flag --tls-port: key "key": required when tls_port is set (set it with --key, FBROKER_KEY or key in the config file)',
    ])
    assert.deepEqual(loadErrors({ env: { FBROKER_WSS_PORT: '8884' }, flags: { cert: CERT } }), [
      'config error in environment variable FBROKER_WSS_PORT: key "key": required when wss_port is set (set it with --key, FBROKER_KEY or key in the config file)',
    ])
    const p = yaml('tls_port: 8883', 'wss_port: 8884', `key: ${KEY}`)
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:1: key "cert": required when tls_port and wss_port are set (set it with --cert, FBROKER_CERT or cert in the config file)`,
    ])
  })

  test('top-level require_certificate and use_identity_as_username need cafile', () => {
    assert.deepEqual(loadErrors({ env: { FBROKER_USE_IDENTITY_AS_USERNAME: 'true' }, flags: { tls_port: '8883', cert: CERT, key: KEY, require_certificate: true } }), [
      'config error in command-line flag --require-certificate: key "require_certificate": needs cafile: the CA certificates that client certificates are verified against',
      'config error in environment variable FBROKER_USE_IDENTITY_AS_USERNAME: key "use_identity_as_username": needs cafile: the CA certificates that client certificates are verified against',
    ])
    assert.equal(loadConfig({ env: {}, flags: { tls_port: '8883', cert: CERT, key: KEY, cafile: CA, require_certificate: 'true' } }).listeners[1]?.requireCertificate, true)
  })

  test('top-level TLS and WebSocket keys that no listener uses are errors', () => {
    const p = yaml(`cert: ${CERT}`, 'ws_path: /ws', 'listeners:', `  - {type: tls, port: 8883, cert: ${CERT}, key: ${KEY}}`)
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:1: key "cert": set, but no listener uses it: it applies to the tls_port and wss_port listeners, and neither is set (a listeners item names its own)`,
      `config error in ${p}:2: key "ws_path": set, but no listener uses it: it applies to the ws_port and wss_port listeners, and neither is set (a listeners item names its own path)`,
    ])
    assert.deepEqual(loadErrors({ env: {}, flags: { require_certificate: true } }), [
      'config error in command-line flag --require-certificate: key "require_certificate": set, but no listener uses it: it applies to the tls_port and wss_port listeners, and neither is set (a listeners item names its own)',
    ])
    // The default ws_path, set explicitly, is harmless.
    assert.equal(loadConfig({ env: {}, flags: { ws_path: '/mqtt' } }).listeners.length, 1)
  })

  test('a bad ws_path or port key names the source', () => {
    assert.deepEqual(loadErrors({ env: { FBROKER_WS_PATH: 'mqtt' }, flags: { ws_port: '8080' } }), [
      'config error in environment variable FBROKER_WS_PATH: key "ws_path": expected a URL path starting with "/" (no spaces, query or fragment), got "mqtt"',
    ])
    assert.deepEqual(loadErrors({ env: {}, flags: { wss_port: 'https' } }), [
      'config error in command-line flag --wss-port: key "wss_port": expected an integer between 0 and 65535, got "https"',
    ])
  })

  test('certificate files that do not exist or are directories are named with the key and the config file', () => {
    const p = yaml('listeners:', '  - type: tls', '    port: 8883', '    cert: certs/missing.pem', '    key: certs', '    cafile: certs/ca.pem')
    assert.deepEqual(loadErrors({ file: p, env: {} }), [
      `config error in ${p}:4: key "listeners[0].cert": cannot read ${path.join(dir, 'certs', 'missing.pem')}: file not found`,
      `config error in ${p}:5: key "listeners[0].key": cannot read ${certs}: it is a directory, not a file`,
    ])
    // A top-level cert shared by tls_port and wss_port is reported once, with the source that set it.
    assert.deepEqual(loadErrors({ env: { FBROKER_CERT: '/nonexistent/server.pem' }, flags: { tls_port: '8883', wss_port: '8884', key: KEY } }), [
      'config error in environment variable FBROKER_CERT: key "cert": cannot read /nonexistent/server.pem: file not found',
    ])
  })

  test('an unreadable certificate file is named', { skip: process.getuid?.() === 0 ? 'root reads every file' : false }, () => {
    const secret = path.join(dir, 'unreadable.key')
    writeFileSync(secret, 'x')
    chmodSync(secret, 0o000)
    assert.deepEqual(loadErrors({ env: {}, flags: { tls_port: '8883', cert: CERT, key: secret } }), [
      `config error in command-line flag --key: key "key": cannot read ${secret}: permission denied`,
    ])
  })

  test('FBROKER_LISTENERS that is not JSON, or not valid, names the variable and the key path', () => {
    assert.match(
      loadErrors({ env: { FBROKER_LISTENERS: '[{type: tcp}]' } })[0] ?? '',
      /^config error in environment variable FBROKER_LISTENERS: key "listeners": expected a JSON list of listeners: /,
    )
    assert.deepEqual(loadErrors({ env: { FBROKER_LISTENERS: '[{"type":"tls","port":8883}]' } }), [
      'config error in environment variable FBROKER_LISTENERS: key "listeners[0].cert": required for a tls listener',
      'config error in environment variable FBROKER_LISTENERS: key "listeners[0].key": required for a tls listener',
    ])
  })

  test('every problem of the list is reported at once, with those of other keys', () => {
    const p = yaml('max_conections: 1', 'listeners:', '  - {type: tls, port: 8883}', '  - {type: ws, port: x}')
    const lines = loadErrors({ file: p, env: {} })
    assert.equal(lines.length, 4)
    assert.ok(lines[0]?.startsWith(`config error in ${p}:1: key "max_conections"`))
    assert.ok(lines[3]?.startsWith(`config error in ${p}:4: key "listeners[1].port"`))
  })
})

describe('Broker.start options: camelCase listeners and the same rule', () => {
  test('listeners items take camelCase keys; unknown ones suggest the camelCase name', () => {
    const settings = resolveBrokerSettings({
      host: '127.0.0.1',
      listeners: [{ type: 'wss', port: 0, cert: 'server.pem', key: KEY, allowedOrigins: ['https://A.example'], proxyProtocol: true }],
    })
    assert.deepEqual(settings.listeners, [
      {
        type: 'wss',
        host: '127.0.0.1',
        port: 0,
        maxConnections: 0,
        proxyProtocol: true,
        cert: path.resolve('server.pem'),
        key: KEY,
        requireCertificate: false,
        useIdentityAsUsername: false,
        path: '/mqtt',
        allowedOrigins: ['https://a.example'],
      },
    ])
    const err = configError(() => resolveBrokerSettings({ listeners: [{ type: 'tcp', port: 1, max_connections: 3 }, { type: 'ws', port: 2, allowedOrigin: [] }] }))
    assert.deepEqual(err.message.split('\n'), [
      'config error in Broker options: key "listeners[0].max_connections": unknown key; did you mean "maxConnections"?',
      'config error in Broker options: key "listeners[1].allowedOrigin": unknown key; did you mean "allowedOrigins"?',
    ])
  })

  test('without listeners: port, plus tlsPort/wsPort/wssPort; with listeners: port only when given', () => {
    const open = (options: Record<string, unknown>) => {
      const settings = resolveBrokerSettings(options)
      return brief(resolveListeners(settings, options.port !== undefined))
    }
    assert.deepEqual(open({}), [['tcp', '0.0.0.0', 1883, 'port']])
    assert.deepEqual(open({ port: 0, wsPort: 0, wsPath: '/ws' }), [
      ['tcp', '0.0.0.0', 0, 'port'],
      ['ws', '0.0.0.0', 0, 'wsPort'],
    ])
    assert.deepEqual(open({ listeners: [{ type: 'ws', port: 0 }] }), [['ws', '0.0.0.0', 0, 'listeners[0]']])
    assert.deepEqual(open({ port: 0, listeners: [{ type: 'ws', port: 0 }] }), [
      ['tcp', '0.0.0.0', 0, 'port'],
      ['ws', '0.0.0.0', 0, 'listeners[0]'],
    ])
  })

  test('option errors name the camelCase option', () => {
    const problems = (options: Record<string, unknown>) => {
      const settings = resolveBrokerSettings(options)
      return configError(() => resolveListeners(settings, options.port !== undefined)).message.split('\n')
    }
    assert.deepEqual(problems({ tlsPort: 0 }), [
      'config error in Broker options: key "cert": required when tlsPort is given',
      'config error in Broker options: key "key": required when tlsPort is given',
    ])
    assert.deepEqual(problems({ wssPort: 0, cert: CERT, key: KEY, useIdentityAsUsername: true }), [
      'config error in Broker options: key "useIdentityAsUsername": needs cafile: the CA certificates that client certificates are verified against',
    ])
    assert.deepEqual(problems({ port: 1884, listeners: [{ type: 'tcp', port: 1884 }] }), [
      'config error in Broker options: key "listeners[0].port": 0.0.0.0:1884 is already used by port, on 0.0.0.0:1884; give each listener its own port',
    ])
    assert.deepEqual(problems({ listeners: [] }), [
      'config error in Broker options: key "listeners": the list is empty and none of port, tlsPort, wsPort, wssPort is given: the broker would have no listener',
    ])
    assert.deepEqual(problems({ wsPath: '/ws' }), [
      'config error in Broker options: key "wsPath": given, but no listener uses it: it applies to the wsPort and wssPort listeners, and neither is given (a listeners item names its own path)',
    ])
    assert.deepEqual(problems({ listeners: [{ type: 'tls', port: 0, cert: '/nonexistent.pem', key: KEY }] }), [
      'config error in Broker options: key "listeners[0].cert": cannot read /nonexistent.pem: file not found',
    ])
  })

  test('a listener problem rejects Broker.start with a ConfigError before anything is bound', async () => {
    await assert.rejects(Broker.start({ logger: false, listeners: [{ type: 'tls', port: 0 }] }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.match(err.message, /key "listeners\[0\]\.cert": required for a tls listener/)
      return true
    })
  })
})

describe('the native listener config', () => {
  test('each type maps to the binding\'s fields; fields of other types and defaults are left out', () => {
    const loaded = loadConfig({
      env: {},
      file: yaml(
        'host: 127.0.0.1',
        'port: 1883',
        'listeners:',
        '  - {type: tcp, port: 1884, max_connections: 10, proxy_protocol: true}',
        `  - {type: tls, port: 8883, cert: ${CERT}, key: ${KEY}, cafile: ${CA}, require_certificate: true, use_identity_as_username: true}`,
        '  - {type: ws, port: 8080, allowed_origins: ["https://a.example"]}',
        `  - {type: wss, host: "::", port: 8081, cert: ${CERT}, key: ${KEY}, path: /wss}`,
      ),
    })
    assert.deepEqual(loaded.listeners.map(toNativeListener), [
      { protocol: 'tcp', host: '127.0.0.1', port: 1883 },
      { protocol: 'tcp', host: '127.0.0.1', port: 1884, maxConnections: 10, proxyProtocol: true },
      {
        protocol: 'tls',
        host: '127.0.0.1',
        port: 8883,
        certFile: CERT,
        keyFile: KEY,
        caFile: CA,
        requireCertificate: true,
        useIdentityAsUsername: true,
      },
      { protocol: 'ws', host: '127.0.0.1', port: 8080, wsPath: '/mqtt', allowedOrigins: ['https://a.example'] },
      {
        protocol: 'wss',
        host: '::',
        port: 8081,
        certFile: CERT,
        keyFile: KEY,
        requireCertificate: false,
        useIdentityAsUsername: false,
        wsPath: '/wss',
        allowedOrigins: [],
      },
    ])
  })
})

describe('documentation of the listener keys', () => {
  test('every item key has a doc; the table marks which types take it', () => {
    const rows = listenerKeyTable()
    assert.equal(rows.length, LISTENER_KEY_SCHEMA.length)
    for (const row of rows) assert.ok(row.doc.length > 20, row.key)
    const cert = rows.find((r) => r.key === 'cert')!
    assert.deepEqual([cert.option, cert.type, cert.types], ['cert', 'file path', ['tls', 'wss']])
    const origins = rows.find((r) => r.key === 'allowed_origins')!
    assert.deepEqual([origins.option, origins.default, origins.literalDefault, origins.types], ['allowedOrigins', '[]', true, ['ws', 'wss']])
    assert.deepEqual(rows.find((r) => r.key === 'host')?.default, 'the top-level `host`')
  })
})

describe('Broker with the native binding', { skip: bindingBuilt ? false : 'packages/binding has no built .node module' }, () => {
  test('a listeners option opens that listener only, and boundListeners says how it was configured', async () => {
    const broker = await Broker.start({ host: '127.0.0.1', logger: false, listeners: [{ type: 'tcp', port: 0, maxConnections: 5 }] })
    try {
      const bound = broker.boundListeners
      assert.equal(bound.length, 1)
      assert.equal(bound[0]?.protocol, 'tcp')
      assert.equal(bound[0]?.host, '127.0.0.1')
      assert.ok((bound[0]?.port ?? 0) > 0)
      assert.equal(bound[0]?.origin, 'listeners[0]')
      assert.equal(bound[0]?.maxConnections, 5)
      assert.equal(broker.port, bound[0]?.port)
      // No TLS listener: nothing to reload, and the native core is not asked.
      assert.deepEqual(broker.reloadTls(), [])
    } finally {
      await broker.close()
    }
    assert.throws(() => broker.reloadTls(), /broker is closed/)
  })
})
