// The durable writer against a fake backend whose applies the test
// resolves, fails or holds: coalescing, acknowledgement after store,
// ordering, retries with backoff, the buffer bound and health events.
import assert from 'node:assert/strict'
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises'
import { describe, test } from 'node:test'
import {
  DurableWriter,
  PersistOpError,
  PersistenceOverflowError,
  WriterClosedError,
  estimateBytes,
  logWriterHealth,
  type ApplyResult,
  type BackendHealth,
  type OpResult,
  type PersistOp,
  type PersistenceBackend,
} from '../../packages/fbroker/src/persistence'

interface Call {
  ops: PersistOp[]
  batchId: string
  at: number
  settle(outcome: 'ok' | Error): void
}

/**
 * A backend whose applies wait until the test settles them (`hold`), or
 * settle at once: succeed (`ok`) or fail (`fail`). Each result names the
 * op's position in the apply, so a batch can check it got its own slice.
 */
class FakeBackend implements PersistenceBackend {
  readonly kind = 'fake'
  mode: 'ok' | 'fail' | 'hold' = 'ok'
  failure = new Error('store unreachable')
  readonly calls: Call[] = []
  inFlight = 0
  maxInFlight = 0

  async open(): Promise<void> {}
  async close(): Promise<void> {}
  async load(): Promise<never> {
    throw new Error('not used')
  }
  async matchRetained(): Promise<never> {
    throw new Error('not used')
  }
  async expire(): Promise<never> {
    throw new Error('not used')
  }
  health(): BackendHealth {
    return { connected: this.mode !== 'fail', status: this.mode }
  }

  apply(ops: readonly PersistOp[], options: { batchId?: string } = {}): Promise<ApplyResult> {
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    return new Promise<ApplyResult>((resolve, reject) => {
      const call: Call = {
        ops: [...ops],
        batchId: options.batchId ?? '',
        at: performance.now(),
        settle: (outcome) => {
          this.inFlight--
          if (outcome === 'ok') resolve({ results: ops.map((_, i): OpResult => ({ kind: 'removed', count: i })) })
          else reject(outcome)
        },
      }
      this.calls.push(call)
      if (this.mode === 'ok') call.settle('ok')
      else if (this.mode === 'fail') call.settle(this.failure)
    })
  }
}

let n = 0
/** A batch of `size` distinct ops. */
function batch(size: number, label = `b${++n}`): PersistOp[] {
  return Array.from({ length: size }, (_, i) => ({ op: 'sub.add', clientId: `${label}-${i}`, filter: 't', qos: 1 }) as PersistOp)
}

/** Whether the promise has settled (after letting pending callbacks run). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  await turn()
  await turn()
  return done
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('timed out waiting')
    await sleep(2)
  }
}

describe('durable writer', () => {
  test('batches submitted in the same turn go into one apply; each resolves with the results of its own ops', async () => {
    const backend = new FakeBackend()
    const writer = new DurableWriter(backend)
    const a = batch(2)
    const b = batch(3)
    const c = batch(1)
    const results = await Promise.all([writer.submit(a), writer.submit(b), writer.submit(c)])
    assert.equal(backend.calls.length, 1)
    assert.deepEqual(backend.calls[0]!.ops, [...a, ...b, ...c])
    assert.deepEqual(
      results.map((r) => r.map((x) => (x as { count: number }).count)),
      [[0, 1], [2, 3, 4], [5]],
    )
    assert.deepEqual(await writer.submit([]), [], 'an empty batch needs no apply')
    assert.equal(backend.calls.length, 1)
  })

  test('a batch is acknowledged only once its apply has resolved', async () => {
    const backend = new FakeBackend()
    backend.mode = 'hold'
    const writer = new DurableWriter(backend)
    const ack = writer.submit(batch(2))
    await until(() => backend.calls.length === 1)
    await sleep(30)
    assert.equal(await settled(ack), false, 'not acknowledged while the store has not answered')
    backend.calls[0]!.settle('ok')
    assert.equal(await settled(ack), true)
    assert.equal((await ack).length, 2)
  })

  test('one apply at a time: batches that arrive meanwhile go, in submission order, into the next apply', async () => {
    const backend = new FakeBackend()
    backend.mode = 'hold'
    const writer = new DurableWriter(backend)
    const first = writer.submit(batch(1, 'first'))
    await until(() => backend.calls.length === 1)
    const later: Promise<OpResult[]>[] = []
    const laterOps: PersistOp[] = []
    for (let i = 0; i < 3; i++) {
      const ops = batch(2, `later${i}`)
      laterOps.push(...ops)
      later.push(writer.submit(ops))
      await sleep(5) // separate turns
    }
    assert.equal(backend.calls.length, 1, 'nothing else starts while the first apply is under way')
    assert.equal(await settled(later[0]!), false)
    backend.calls[0]!.settle('ok')
    await first
    await until(() => backend.calls.length === 2)
    assert.deepEqual(backend.calls[1]!.ops, laterOps)
    backend.calls[1]!.settle('ok')
    await Promise.all(later)
    assert.equal(backend.maxInFlight, 1)
    assert.notEqual(backend.calls[0]!.batchId, backend.calls[1]!.batchId)
  })

  test('maxOpsPerApply caps an apply at batch boundaries and never splits a batch', async () => {
    const backend = new FakeBackend()
    const writer = new DurableWriter(backend, { maxOpsPerApply: 5 })
    await Promise.all([3, 2, 3, 7, 1].map((size) => writer.submit(batch(size))))
    assert.deepEqual(
      backend.calls.map((c) => c.ops.length),
      [5, 3, 7, 1],
    )
  })

  test('a failed apply is retried with the same ops and batch id, backing off exponentially up to retryMaxMs; degraded and recovered are emitted once', async () => {
    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { retryInitialMs: 20, retryMaxMs: 60, retryJitter: 0 })
    const events: string[] = []
    const delays: number[] = []
    writer.on('degraded', (e) => events.push(`degraded:${e.error.message}`))
    writer.on('retry', (e) => delays.push(e.delayMs))
    writer.on('recovered', (e) => events.push(`recovered:${e.failedAttempts}`))
    const ops = batch(3)
    const ack = writer.submit(ops)
    await until(() => backend.calls.length === 5)
    backend.mode = 'ok'
    await until(() => backend.calls.length === 6)
    assert.equal((await ack).length, 3)
    assert.deepEqual(delays, [20, 40, 60, 60, 60])
    const gaps = backend.calls.slice(1).map((c, i) => c.at - backend.calls[i]!.at)
    gaps.forEach((gap, i) => assert.ok(gap >= delays[i]! - 2, `attempt ${i + 2} came after ${gap.toFixed(1)} ms, not ${delays[i]}`))
    for (const call of backend.calls) {
      assert.deepEqual(call.ops, ops)
      assert.equal(call.batchId, backend.calls[0]!.batchId, 'the same batch id on every attempt')
    }
    assert.deepEqual(events, ['degraded:store unreachable', 'recovered:5'])
    assert.equal(writer.health().state, 'ok')
  })

  test('jitter spreads the delays within ±retryJitter', async () => {
    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { retryInitialMs: 100, retryMaxMs: 100, retryJitter: 0.5 })
    const delays: number[] = []
    writer.on('retry', (e) => delays.push(e.delayMs))
    void writer.submit(batch(1)).catch(() => {})
    await until(() => delays.length === 1)
    await writer.close({ timeoutMs: 1 })
    assert.ok(delays[0]! >= 50 && delays[0]! <= 150, String(delays[0]))
  })

  test('during an outage batches are held up to maxBufferedOps; past it submit rejects with PersistenceOverflowError, and every accepted batch is acknowledged, in order, after recovery', async () => {
    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { maxBufferedOps: 10, retryInitialMs: 10, retryMaxMs: 20, retryJitter: 0 })
    const overflows: number[] = []
    writer.on('overflow', (e) => overflows.push(e.refusedOps))
    const accepted: Array<{ ops: PersistOp[]; ack: Promise<OpResult[]> }> = []
    const take = (size: number) => {
      const ops = batch(size)
      const ack = writer.submit(ops)
      return { ops, ack }
    }
    accepted.push(take(4))
    await until(() => backend.calls.length >= 2) // failing, retrying
    accepted.push(take(4))
    const refused = take(4) // 12 > 10
    await assert.rejects(refused.ack, (err: unknown) => {
      assert.ok(err instanceof PersistenceOverflowError)
      assert.equal(err.code, 'PERSISTENCE_OVERFLOW')
      assert.equal(err.bufferedOps, 8)
      return true
    })
    accepted.push(take(2)) // exactly 10
    await assert.rejects(take(1).ack, PersistenceOverflowError)
    assert.deepEqual(overflows, [4], 'overflow is emitted once per episode')
    const h = writer.health()
    assert.deepEqual([h.state, h.bufferedOps, h.bufferedBatches, h.overflowing, h.refusedBatches, h.refusedOps], ['degraded', 10, 3, true, 2, 5])
    assert.equal(h.lastError, 'store unreachable')
    assert.equal(h.backend.connected, false)

    backend.mode = 'ok'
    const results = await Promise.all(accepted.map((a) => a.ack))
    assert.deepEqual(results.map((r) => r.length), [4, 4, 2])
    const stored = backend.calls.filter((c) => c.ops.length > 0).slice(-2)
    assert.deepEqual(stored.at(-1)!.ops, [...accepted[1]!.ops, ...accepted[2]!.ops], 'held batches follow in submission order')
    assert.ok(!backend.calls.some((c) => c.ops.some((op) => refused.ops.includes(op))), 'a refused batch never reaches the store')
    assert.deepEqual([writer.health().bufferedOps, writer.health().overflowing], [0, false])

    // A new episode emits again.
    backend.mode = 'fail'
    void take(9).ack
    await until(() => backend.calls.length >= 1 && writer.health().state === 'degraded')
    await assert.rejects(take(2).ack, PersistenceOverflowError)
    assert.deepEqual(overflows, [4, 2])
    backend.mode = 'ok'
    await writer.flush()
  })

  test('maxBufferedBytes bounds held bytes, counting a payload fanned out to many clients once', async () => {
    const message = { id: 'fan', topic: 'news', payload: Buffer.alloc(1000), qos: 1 as const, retain: false }
    const fanout = (n: number): PersistOp[] => Array.from({ length: n }, (_, i) => ({ op: 'queue.push', clientId: `c${i}`, message }) as PersistOp)
    const one = estimateBytes(fanout(1))
    const ten = estimateBytes(fanout(10))
    assert.ok(one > 1000 && ten < 2 * 1000, `${one}, ${ten}: the payload is counted once`)

    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { maxBufferedBytes: ten + 500, retryInitialMs: 10, retryJitter: 0 })
    const first = writer.submit(fanout(10))
    await until(() => backend.calls.length >= 1)
    await assert.rejects(writer.submit(fanout(1)), PersistenceOverflowError, 'another payload does not fit')
    const smallOps = batch(2)
    const small = writer.submit(smallOps) // a few bytes do
    assert.equal(writer.health().bufferedBytes, ten + estimateBytes(smallOps))
    backend.mode = 'ok'
    await Promise.all([first, small])
  })

  test('a batch submitted while nothing is held is taken whatever its size', async () => {
    const backend = new FakeBackend()
    const writer = new DurableWriter(backend, { maxBufferedOps: 2, maxBufferedBytes: 10 })
    assert.equal((await writer.submit(batch(50))).length, 50)
  })

  test('a malformed batch is refused at once with PersistOpError and does not disturb the others', async () => {
    const backend = new FakeBackend()
    const writer = new DurableWriter(backend)
    const good = writer.submit(batch(2))
    const bad = writer.submit([{ op: 'sub.add', clientId: 'c', filter: 'a/#/b', qos: 1 }])
    await assert.rejects(bad, PersistOpError)
    assert.equal((await good).length, 2)
    assert.equal(backend.calls.length, 1)
    assert.equal(backend.calls[0]!.ops.length, 2)
  })

  test('a backend answering with the wrong number of results rejects those batches without retrying', async () => {
    const backend = new FakeBackend()
    backend.apply = async () => ({ results: [] })
    const writer = new DurableWriter(backend)
    await assert.rejects(writer.submit(batch(2)), /returned 0 results for 2 ops/)
    assert.equal(writer.health().failedAttempts, 0)
    assert.equal(writer.health().bufferedOps, 0)
  })

  test('flush() resolves once everything submitted so far is stored; health() counts applied batches and ops', async () => {
    const backend = new FakeBackend()
    backend.mode = 'hold'
    const writer = new DurableWriter(backend)
    const acks = [writer.submit(batch(2)), writer.submit(batch(3))]
    const flushed = writer.flush()
    await until(() => backend.calls.length === 1)
    assert.equal(await settled(flushed), false)
    assert.deepEqual([writer.health().bufferedOps, writer.health().bufferedBatches], [5, 2])
    backend.calls[0]!.settle('ok')
    await flushed
    await Promise.all(acks)
    const h = writer.health()
    assert.deepEqual([h.state, h.appliedBatches, h.appliedOps, h.bufferedOps, h.bufferedBytes], ['ok', 2, 5, 0, 0])
  })

  test('close() refuses new batches and waits for the held ones to be stored', async () => {
    const backend = new FakeBackend()
    backend.mode = 'hold'
    const writer = new DurableWriter(backend)
    const ack = writer.submit(batch(1))
    await until(() => backend.calls.length === 1)
    const closing = writer.close()
    await assert.rejects(writer.submit(batch(1)), WriterClosedError)
    assert.equal(await settled(closing), false)
    backend.calls[0]!.settle('ok')
    await closing
    await ack
    assert.equal(writer.health().state, 'closed')
  })

  test('close({ timeoutMs }) during an outage rejects the held batches with WriterClosedError and stops retrying', async () => {
    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { retryInitialMs: 5, retryMaxMs: 5, retryJitter: 0 })
    const acks = [writer.submit(batch(1)), writer.submit(batch(1))]
    await until(() => backend.calls.length >= 2)
    const later = writer.submit(batch(1))
    await writer.close({ timeoutMs: 30 })
    for (const ack of [...acks, later]) await assert.rejects(ack, (err: unknown) => err instanceof WriterClosedError && /store unreachable/.test(err.message))
    const calls = backend.calls.length
    await sleep(50)
    assert.equal(backend.calls.length, calls, 'no attempt after close gave up')
    assert.equal(writer.health().bufferedOps, 0)
  })

  test('rejects impossible options', () => {
    const backend = new FakeBackend()
    assert.throws(() => new DurableWriter(backend, { maxBufferedOps: 0 }), /maxBufferedOps/)
    assert.throws(() => new DurableWriter(backend, { retryJitter: 2 }), /retryJitter/)
    assert.throws(() => new DurableWriter(backend, { retryInitialMs: -1 }), /retryInitialMs/)
  })

  test('logWriterHealth logs degraded and overflow as errors and recovered as info, until detached', async () => {
    const backend = new FakeBackend()
    backend.mode = 'fail'
    const writer = new DurableWriter(backend, { maxBufferedOps: 1, retryInitialMs: 5, retryJitter: 0 })
    const lines: Array<[string, string]> = []
    const at = (level: string) => (_o: object, msg?: string) => void lines.push([level, msg ?? ''])
    const detach = logWriterHealth(writer, { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') })
    const ack = writer.submit(batch(1))
    await until(() => backend.calls.length >= 2)
    await assert.rejects(writer.submit(batch(1)), PersistenceOverflowError)
    backend.mode = 'ok'
    await ack
    const shown = lines.filter(([level]) => level !== 'debug')
    assert.equal(shown.length, 3, JSON.stringify(shown))
    assert.equal(shown[0]![0], 'error')
    assert.match(shown[0]![1], /^persistence store unavailable \(store unreachable\): buffering durable writes and retrying/)
    assert.equal(shown[1]![0], 'error')
    assert.match(shown[1]![1], /^persistence buffer full: refusing publishes/)
    assert.equal(shown[2]![0], 'info')
    assert.match(shown[2]![1], /^persistence store available again after \d+ ms/)
    assert.ok(lines.some(([level, msg]) => level === 'debug' && /retrying/.test(msg)))
    detach()
    const count = lines.length
    backend.mode = 'fail'
    void writer.submit(batch(1)).catch(() => {})
    await until(() => writer.health().state === 'degraded')
    assert.equal(lines.length, count)
    await writer.close({ timeoutMs: 1 })
  })
})
