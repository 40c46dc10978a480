// Interop with the Eclipse Paho Python client (PyPI paho-mqtt), MQTT 3.1
// and 3.1.1: QoS 0/1/2 round trip and a retained message.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { startBroker, type RunningBroker } from '../helpers/broker'

const script = join(__dirname, '..', 'interop', 'paho_roundtrip.py')
const hasPaho = spawnSync('python3', ['-c', 'import paho.mqtt.client'], { stdio: 'ignore' }).status === 0

let broker: RunningBroker
before(async () => {
  broker = await startBroker()
})
after(async () => {
  await broker.close()
})

for (const protocol of ['31', '311']) {
  test(`[fbroker] paho-mqtt (MQTT ${protocol === '31' ? '3.1' : '3.1.1'}) QoS 0/1/2 and retained round trip`, { skip: !hasPaho && 'paho-mqtt is not installed (scripts/install-system-deps.sh installs it)' }, () => {
    const r = spawnSync('python3', [script, String(broker.port), protocol], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, `paho script failed: ${r.stdout}\n${r.stderr}`)
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string)
    assert.equal(out.received.length, 4)
  })
}
