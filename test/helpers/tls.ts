// Throw-away TLS material for the listener tests: scripts/gencert.sh run
// into a temporary directory (removed after the test file), never into the
// repository. Each call makes a fresh CA, so two sets never trust each other.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { repoRoot, tempDir } from './auth'

export interface CertSet {
  dir: string
  /** The CA that signed the server and client certificates. */
  ca: string
  /** Server certificate (CN localhost; SANs localhost, 127.0.0.1, ::1) and its PKCS#8 key. */
  cert: string
  key: string
  /** Client certificate (CN `clientCn`) and its key. */
  clientCert: string
  clientKey: string
  clientCn: string
  /** The files' current contents, for node's tls / MQTT.js options. */
  read(): { ca: Buffer; cert: Buffer; key: Buffer; clientCert: Buffer; clientKey: Buffer }
}

/** Runs scripts/gencert.sh into `dir` (overwriting what is there with a new CA, server and client certificate). */
export function gencert(dir: string, clientCn = 'fbroker-client'): void {
  const r = spawnSync('bash', [join(repoRoot, 'scripts', 'gencert.sh'), dir, '--client-cn', clientCn], {
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.equal(r.status, 0, `scripts/gencert.sh failed (${r.status}): ${r.stderr}${r.stdout}`)
}

/** A fresh certificate set in a temporary directory removed after the test file (call at module level or in a hook). */
export function makeCerts(opts: { clientCn?: string; prefix?: string } = {}): CertSet {
  const clientCn = opts.clientCn ?? 'fbroker-client'
  const dir = tempDir(opts.prefix ?? 'certs')
  gencert(dir, clientCn)
  return certSetIn(dir, clientCn)
}

/** The paths gencert.sh writes in `dir`. */
export function certSetIn(dir: string, clientCn = 'fbroker-client'): CertSet {
  const set = {
    dir,
    ca: join(dir, 'ca.pem'),
    cert: join(dir, 'server.pem'),
    key: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    clientCn,
  }
  return {
    ...set,
    read: () => ({
      ca: readFileSync(set.ca),
      cert: readFileSync(set.cert),
      key: readFileSync(set.key),
      clientCert: readFileSync(set.clientCert),
      clientKey: readFileSync(set.clientKey),
    }),
  }
}
