// The README is documentation users copy from: its config table must match
// the schema and its example file must load.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from 'fbroker'

const root = join(__dirname, '..', '..')

test('[fbroker] the README config tables match the schema', () => {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-config-docs.mjs'), '--check'], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
})

test('[fbroker] the example config in the README is examples/fbroker.yaml and loads', () => {
  const example = readFileSync(join(root, 'examples', 'fbroker.yaml'), 'utf8')
  assert.ok(readFileSync(join(root, 'README.md'), 'utf8').includes(example), 'README example and examples/fbroker.yaml differ')
  const loaded = loadConfig({ file: join(root, 'examples', 'fbroker.yaml'), env: {} })
  assert.equal(loaded.config.max_connections, 10000)
  assert.equal(loaded.config.queue_drop_policy, 'drop_oldest')
})
