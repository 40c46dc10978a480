// test/CONFORMANCE.md maps every MQTT 3.1.1 normative statement to the tests
// that check it; scripts/check-conformance.mjs keeps it in step with the
// test files (a renamed or removed test, a duplicate row, a row without a test
// and without a reason all fail here).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const testDir = join(__dirname, '..')
const script = join(testDir, '..', 'scripts', 'check-conformance.mjs')

const check = (doc?: string) => spawnSync(process.execPath, doc ? [script, doc] : [script], { encoding: 'utf8' })

test('test/CONFORMANCE.md cites only existing tests and says why a statement has none', () => {
  const r = check()
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`)
  // sections 1.5.3, 2, 3 and 4 of MQTT 3.1.1 hold 133 numbered statements: none may go missing
  assert.match(r.stdout, /\b133 statements\b/)
})

test('check-conformance reports an unknown test, a duplicate or unsorted id and a row with neither test nor reason', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbroker-conformance-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const doc = join(dir, 'CONFORMANCE.md')
  writeFileSync(
    doc,
    [
      '| Statement | Requirement | Tests (file : test name) | Notes |',
      '|---|---|---|---|',
      '| [MQTT-3.1.0-2] | second CONNECT | conformance-connect.test.ts : [MQTT-3.1.0-2] a second CONNECT is a protocol violation and closes the connection | |',
      '| [MQTT-3.1.0-1] | first packet | conformance-connect.test.ts : [MQTT-3.1.0-1] no such test | |',
      '| [MQTT-3.1.0-2] | again | | |',
      '| [MQTT-3.1.2-18] | user name flag 0 | | Client-side. |',
      '',
    ].join('\n'),
  )
  const r = check(doc)
  assert.equal(r.status, 1, `${r.stdout}${r.stderr}`)
  assert.match(r.stderr, /4 problem\(s\)/)
  assert.match(r.stderr, /line 4: \[MQTT-3\.1\.0-1\] comes after \[MQTT-3\.1\.0-2\]/)
  assert.match(r.stderr, /line 4: conformance-connect\.test\.ts has no test named: \[MQTT-3\.1\.0-1\] no such test/)
  assert.match(r.stderr, /line 5: \[MQTT-3\.1\.0-2\] cites no test/)
  assert.match(r.stderr, /line 5: \[MQTT-3\.1\.0-2\] is listed twice/)
})
