// A subscriber woken for a delivery yields once before it drains its queue,
// so that the publishers made ready by the same epoll wake-up route their
// messages first and one write carries them all (crates/fbroker-core
// connection/mod.rs, `coalesce_deliveries`). These tests check that the
// batching loses and reorders nothing. (That the queue bound still holds for
// a subscriber that stops reading: conformance-session.test.ts.)
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { startBroker, target } from '../helpers/broker'
import { raw, subscribe, uid } from '../helpers/clients'
import type { RawClient, RawPacket } from '../helpers/raw'
import { sleep, waitUntil } from '../helpers/wait'

const skip = target === 'mosquitto' && 'needs fbroker workerThreads and stats()'

/** Collects every PUBLISH `c` receives into `into` (payloads as strings). */
function gather(c: RawClient, into: string[]): void {
  void (async () => {
    for (;;) {
      let p: RawPacket | null
      try {
        p = await c.next(60_000)
      } catch {
        return
      }
      if (!p) return
      if (p.cmd === 'publish') into.push(String(p.payload))
    }
  })()
}

describe('[fbroker] coalesced deliveries', () => {
  for (const workerThreads of [1, 2]) {
    test(`[MQTT-4.6.0-6] [fbroker] a burst from 200 publishers at once (5 QoS 0 messages each) reaches one wildcard subscriber complete and in each publisher's order, with maxQueuedMessages 50 (workerThreads ${workerThreads})`, { skip }, async (t) => {
      // 1,000 messages, 20 times the queue limit: they arrive together, so
      // a subscriber that coalesces them into one write holds them all in
      // its queue at once. None may be dropped: the subscriber keeps up.
      const s = await startBroker({ maxQueuedMessages: 50, workerThreads })
      t.after(() => s.close())
      const base = uid('co')
      const sub = await raw(t, s.port, { clientId: uid('s') })
      await subscribe(sub, `${base}/#`, 0)
      const publishers = await Promise.all(Array.from({ length: 200 }, (_, i) => raw(t, s.port, { clientId: `${base}-p${i}` })))
      const got: string[] = []
      gather(sub, got)
      // All in one turn of the JS event loop: the broker sees 200 sockets
      // become readable together.
      publishers.forEach((p, i) => {
        for (let k = 0; k < 5; k++) p.send({ cmd: 'publish', topic: `${base}/${i}`, payload: `${i}:${k}`, qos: 0 })
      })
      await waitUntil(() => got.length >= 1000, 10_000)
      await sleep(100) // duplicates, if any
      assert.equal(got.length, 1000, `delivered ${got.length} of 1000`)
      const next = new Array<number>(200).fill(0)
      for (const m of got) {
        const [i, k] = m.split(':').map(Number)
        assert.equal(k, next[i], `publisher ${i}: got message ${k}, expected ${next[i]}`)
        next[i]++
      }
      const stats = s.broker.stats()
      assert.equal(Number(stats.publishDropped), 0, `stats: ${JSON.stringify(stats)}`)
    })
  }
})
