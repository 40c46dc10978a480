// The behaviour every persistence backend must have (memory, Redis, Redis
// Cluster). A test file calls `persistenceSuite` with a factory that opens a
// fresh, empty store with the given queue limits, and ways to look inside
// it (to check that nothing is left behind and that fanned-out payloads are
// stored once).
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  PersistOpError,
  type PersistOp,
  type PersistenceBackend,
  type QueueLimits,
  type SessionRecord,
  type StoredMessage,
} from '../../packages/fbroker/src/persistence'

export interface PersistenceFixture {
  backend: PersistenceBackend
  /**
   * Names of every stored piece of broker state (Redis: keys), leaving out
   * the backend's own bookkeeping. Empty when nothing is stored.
   */
  stateKeys(): Promise<string[]>
  /** How many message bodies are stored. */
  messageBodies(): Promise<number>
  /** Closes the backend and frees the store. */
  close(): Promise<void>
}

export type PersistenceFactory = (options: { queue?: QueueLimits }) => Promise<PersistenceFixture>

export interface PersistenceSuiteOptions {
  /** A reason to skip the whole suite (e.g. redis-server missing), or false. */
  skip?: string | false
  /**
   * How many copies of one message a fan-out to these clients stores: 1
   * where bodies are shared by every session (default); one per group on a
   * Redis Cluster (bodies are shared within a hash slot).
   */
  bodiesFor?: (clientIds: string[]) => number
}

let ids = 0
/** A message with a fresh id. */
export function msg(topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 1, extra: Partial<StoredMessage> = {}): StoredMessage {
  return { id: `m${++ids}-${Date.now()}`, topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), qos, retain: false, ...extra }
}

export function session(extra: Partial<SessionRecord> = {}): SessionRecord {
  return { clean: false, connected: true, expiresAt: null, lastSeen: 1_700_000_000_000, node: 'node-a', epoch: 1, will: null, ...extra }
}

const save = (clientId: string, extra: Partial<SessionRecord> = {}): PersistOp => ({ op: 'session.save', clientId, session: session(extra) })
const push = (clientId: string, message: StoredMessage, qos?: 0 | 1 | 2, retain?: boolean): PersistOp => {
  const op: PersistOp = { op: 'queue.push', clientId, message }
  if (qos !== undefined) op.qos = qos
  if (retain !== undefined) op.retain = retain
  return op
}

/** Every byte value, twice, plus invalid UTF-8: payloads must survive byte for byte. */
const BINARY = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28]), Buffer.from('end')])

/** The shared test suite for a persistence backend. */
export function persistenceSuite(label: string, factory: PersistenceFactory, options: PersistenceSuiteOptions = {}): void {
  const bodiesFor = options.bodiesFor ?? (() => 1)

  describe(`persistence contract: ${label}`, { skip: options.skip ?? false }, () => {
    async function withStore(queue: QueueLimits | undefined, body: (f: PersistenceFixture, b: PersistenceBackend) => Promise<void>) {
      const fixture = await factory(queue === undefined ? {} : { queue })
      try {
        await body(fixture, fixture.backend)
      } finally {
        await fixture.close()
      }
    }

    async function loaded(b: PersistenceBackend, clientId: string) {
      return (await b.load()).sessions.find((s) => s.clientId === clientId)
    }

    test('a fresh store loads nothing, matches nothing, expires nothing and holds no keys', async () => {
      await withStore(undefined, async (f, b) => {
        assert.deepEqual(await b.load(), { sessions: [], retained: [] })
        assert.deepEqual(await b.matchRetained('#'), [])
        assert.deepEqual(await b.expire(Date.now()), [])
        assert.deepEqual(await f.stateKeys(), [])
        assert.equal(b.health().connected, true)
      })
    })

    test('session.save round-trips every field, including a binary will; a second save replaces the record but keeps the state', async () => {
      await withStore(undefined, async (_f, b) => {
        const will = { topic: 'clients/c1/status', payload: BINARY, qos: 2 as const, retain: true }
        await b.apply([
          save('c1', { clean: true, connected: false, expiresAt: 1_700_000_123_456, lastSeen: 1_700_000_000_001, node: 'node-ü', epoch: 7, will }),
          { op: 'sub.add', clientId: 'c1', filter: 'a/#', qos: 1 },
        ])
        const s = await loaded(b, 'c1')
        assert.deepEqual(s?.session, { clean: true, connected: false, expiresAt: 1_700_000_123_456, lastSeen: 1_700_000_000_001, node: 'node-ü', epoch: 7, will })
        assert.ok(s!.session.will!.payload.equals(BINARY))

        await b.apply([save('c1', { epoch: 8 })])
        const again = await loaded(b, 'c1')
        assert.deepEqual(again?.session, session({ epoch: 8 }), 'the will is gone, every field replaced')
        assert.deepEqual(again?.subscriptions, [{ filter: 'a/#', qos: 1 }], 'subscriptions survive a save')
      })
    })

    test('subscriptions: add, replace the QoS, remove; loaded sorted by filter', async () => {
      await withStore(undefined, async (_f, b) => {
        await b.apply([
          save('c1'),
          { op: 'sub.add', clientId: 'c1', filter: 'z/+', qos: 0 },
          { op: 'sub.add', clientId: 'c1', filter: 'a/#', qos: 1 },
          { op: 'sub.add', clientId: 'c1', filter: 'm/ü/x', qos: 2 },
          { op: 'sub.add', clientId: 'c1', filter: 'a/#', qos: 2 },
          { op: 'sub.remove', clientId: 'c1', filter: 'z/+' },
          { op: 'sub.remove', clientId: 'c1', filter: 'never/subscribed' },
        ])
        assert.deepEqual((await loaded(b, 'c1'))?.subscriptions, [
          { filter: 'a/#', qos: 2 },
          { filter: 'm/ü/x', qos: 2 },
        ])
      })
    })

    test('the queue keeps FIFO order, delivery QoS and retain flags and binary payloads; queue.remove takes from the head and says how many left', async () => {
      await withStore({ maxMessages: 0 }, async (_f, b) => {
        const m1 = msg('t/1', BINARY, 2, { publisher: 'pub-1', timestamp: 1_700_000_000_500 })
        const m2 = msg('t/2', '', 0)
        const m3 = msg('t/3', 'three', 1, { retain: true })
        const m4 = msg('t/4', 'four', 2)
        const { results } = await b.apply([save('c1'), push('c1', m1, 1), push('c1', m2, 0), push('c1', m3, 1, true), push('c1', m4)])
        assert.deepEqual(results, [null, { kind: 'queued', evicted: 0 }, { kind: 'queued', evicted: 0 }, { kind: 'queued', evicted: 0 }, { kind: 'queued', evicted: 0 }])
        const q = (await loaded(b, 'c1'))!.queue
        assert.deepEqual(
          q.map((e) => [e.message.id, e.qos, e.retain]),
          [
            [m1.id, 1, false],
            [m2.id, 0, false],
            [m3.id, 1, true],
            [m4.id, 2, false],
          ],
        )
        assert.deepEqual(q[0]!.message, m1, 'every message field round-trips (publisher, timestamp)')
        assert.ok(q[0]!.message.payload.equals(BINARY))
        assert.equal(q[1]!.message.payload.length, 0)
        assert.equal(q[2]!.message.retain, true, "the publisher's retain flag is kept")

        const removed = await b.apply([
          { op: 'queue.remove', clientId: 'c1', count: 2 },
          { op: 'queue.remove', clientId: 'c1', count: 5 },
          { op: 'queue.remove', clientId: 'c1', count: 1 },
        ])
        assert.deepEqual(removed.results, [
          { kind: 'removed', count: 2 },
          { kind: 'removed', count: 2 },
          { kind: 'removed', count: 0 },
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.queue, [])
      })
    })

    test('count bound, drop_oldest: a full queue evicts its oldest message and the result says how many', async () => {
      await withStore({ maxMessages: 3, policy: 'drop_oldest' }, async (f, b) => {
        const m = Array.from({ length: 5 }, (_, i) => msg('t', `p${i}`))
        const { results } = await b.apply([save('c1'), ...m.map((x) => push('c1', x))])
        assert.deepEqual(results.slice(1), [
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 1 },
          { kind: 'queued', evicted: 1 },
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.queue.map((e) => e.message.payload.toString()), ['p2', 'p3', 'p4'])
        assert.equal(await f.messageBodies(), 3, 'evicted bodies are deleted')
      })
    })

    test('count bound, drop_new: a full queue refuses the arriving message and keeps the oldest', async () => {
      await withStore({ maxMessages: 3, policy: 'drop_new' }, async (f, b) => {
        const m = Array.from({ length: 5 }, (_, i) => msg('t', `p${i}`))
        const { results } = await b.apply([save('c1'), ...m.map((x) => push('c1', x))])
        assert.deepEqual(results.slice(4), [
          { kind: 'dropped', reason: 'queue_full' },
          { kind: 'dropped', reason: 'queue_full' },
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.queue.map((e) => e.message.payload.toString()), ['p0', 'p1', 'p2'])
        assert.equal(await f.messageBodies(), 3, 'a refused message is not stored')
        await b.apply([{ op: 'queue.remove', clientId: 'c1', count: 1 }])
        assert.deepEqual((await b.apply([push('c1', m[4]!)])).results, [{ kind: 'queued', evicted: 0 }], 'room again after a removal')
      })
    })

    test('byte bound: drop_oldest evicts until the payload fits; a payload larger than the bound is refused under either policy', async () => {
      await withStore({ maxMessages: 0, maxBytes: 10, policy: 'drop_oldest' }, async (_f, b) => {
        const { results } = await b.apply([
          save('c1'),
          push('c1', msg('t', '1111')),
          push('c1', msg('t', '2222')),
          push('c1', msg('t', '333333')), // 14 bytes: evicts the first (8 + 6 > 10 → 4 + 6)
          push('c1', msg('t', 'x'.repeat(11))),
          push('c1', msg('t', '4444444444')), // exactly 10: evicts both
        ])
        assert.deepEqual(results.slice(1), [
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 1 },
          { kind: 'dropped', reason: 'too_large' },
          { kind: 'queued', evicted: 2 },
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.queue.map((e) => e.message.payload.toString()), ['4444444444'])
      })
      await withStore({ maxMessages: 100, maxBytes: 10, policy: 'drop_new' }, async (_f, b) => {
        const { results } = await b.apply([save('c1'), push('c1', msg('t', '12345678')), push('c1', msg('t', '123')), push('c1', msg('t', '12')), push('c1', msg('t', 'x'.repeat(11)))])
        assert.deepEqual(results.slice(1), [
          { kind: 'queued', evicted: 0 },
          { kind: 'dropped', reason: 'queue_full' },
          { kind: 'queued', evicted: 0 },
          { kind: 'dropped', reason: 'too_large' },
        ])
      })
    })

    test('one batch of pushes, removals, evictions and a delete keeps FIFO order and releases every body it no longer needs', async () => {
      await withStore({ maxMessages: 3, policy: 'drop_oldest' }, async (f, b) => {
        const m = Array.from({ length: 6 }, (_, i) => msg('t', `p${i}`))
        const { results } = await b.apply([
          save('c1'),
          save('c2'),
          push('c1', m[0]!),
          push('c1', m[1]!),
          { op: 'queue.remove', clientId: 'c1', count: 1 }, // p0, pushed in this very batch
          push('c1', m[2]!),
          push('c1', m[3]!),
          push('c1', m[4]!), // evicts p1
          push('c2', m[5]!),
          push('c2', m[4]!),
          { op: 'session.delete', clientId: 'c2' }, // drops its two entries, pushed in this batch
        ])
        assert.deepEqual(results.slice(2), [
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          { kind: 'removed', count: 1 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 1 },
          { kind: 'queued', evicted: 0 },
          { kind: 'queued', evicted: 0 },
          null,
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.queue.map((e) => e.message.payload.toString()), ['p2', 'p3', 'p4'])
        assert.equal(await loaded(b, 'c2'), undefined)
        assert.equal(await f.messageBodies(), 3, 'only the bodies c1 still queues are left (p5, queued for c2 alone, is gone)')
        await b.apply([{ op: 'queue.remove', clientId: 'c1', count: 3 }])
        assert.equal(await f.messageBodies(), 0)
      })
    })

    test('message fields round-trip whatever they contain: separators and newlines in topic and publisher, fractional timestamps', async () => {
      await withStore(undefined, async (_f, b) => {
        const odd = msg('a:b/1:2\n/ü/€/', 'x', 2, { publisher: 'pub:7:\nz', timestamp: 1_700_000_000_000.25, retain: true })
        const plain = msg('p', 'y', 1, { publisher: '' })
        await b.apply([save('c1'), push('c1', odd), push('c1', plain)])
        const q = (await loaded(b, 'c1'))!.queue
        assert.deepEqual(q[0]!.message, odd)
        assert.equal(q[1]!.message.publisher, undefined, 'an empty publisher is not stored')
        assert.equal(q[1]!.message.timestamp, undefined)
      })
    })

    test('a message fanned out to many sessions is stored once, and deleted with its last reference', async () => {
      await withStore({ maxMessages: 2 }, async (f, b) => {
        const clients = Array.from({ length: 60 }, (_, i) => `fan-${i}`)
        const big = msg('news', Buffer.alloc(4096, 7))
        await b.apply(clients.map((c) => save(c)))
        const { results } = await b.apply(clients.map((c) => push(c, big, 1)))
        assert.ok(results.every((r) => r?.kind === 'queued'))
        assert.equal(await f.messageBodies(), bodiesFor(clients))
        const snap = await b.load()
        assert.equal(snap.sessions.length, 60)
        const first = snap.sessions[0]!.queue[0]!.message
        assert.ok(first.payload.equals(big.payload))
        if (bodiesFor(clients) === 1) assert.ok(snap.sessions.every((s) => s.queue[0]!.message === first), 'one shared object in the snapshot')

        await b.apply(clients.slice(0, 59).map((c) => ({ op: 'queue.remove', clientId: c, count: 1 }) as PersistOp))
        assert.equal(await f.messageBodies(), bodiesFor(clients.slice(59)), 'still referenced by the last queue')
        // Evicted by the bound from the last queue: gone for good.
        await b.apply([push('fan-59', msg('news', 'a')), push('fan-59', msg('news', 'b'))])
        assert.equal((await loaded(b, 'fan-59'))!.queue.length, 2)
        assert.equal(await f.messageBodies(), 2)
      })
    })

    test('in-flight: stages, first-send order, the message released at pubcomp and on clear; moving queue → in-flight keeps the body', async () => {
      await withStore(undefined, async (f, b) => {
        const m1 = msg('t/1', 'one', 1)
        const m2 = msg('t/2', BINARY, 2)
        const m3 = msg('t/3', 'three', 2)
        await b.apply([save('c1'), push('c1', m1, 1), push('c1', m2, 2), push('c1', m3, 2)])
        await b.apply([
          // The core moves the head of the queue into its window.
          { op: 'queue.remove', clientId: 'c1', count: 2 },
          { op: 'inflight.set', clientId: 'c1', packetId: 9, stage: 'pubrec', message: m2, retain: true },
          { op: 'inflight.set', clientId: 'c1', packetId: 65535, stage: 'puback', message: m1 },
        ])
        assert.equal(await f.messageBodies(), 3)
        let s = (await loaded(b, 'c1'))!
        assert.deepEqual(
          s.inflight.map((e) => [e.packetId, e.stage, e.qos, e.retain, e.message?.id]),
          [
            [9, 'pubrec', 2, true, m2.id],
            [65535, 'puback', 1, false, m1.id],
          ],
        )
        assert.ok(s.inflight[0]!.message!.payload.equals(BINARY))
        assert.deepEqual(s.queue.map((e) => e.message.id), [m3.id])

        // PUBREC: only PUBREL is resent from now on, so the message goes; the entry keeps its place and flags.
        await b.apply([{ op: 'inflight.set', clientId: 'c1', packetId: 9, stage: 'pubcomp' }])
        s = (await loaded(b, 'c1'))!
        assert.deepEqual(
          s.inflight.map((e) => [e.packetId, e.stage, e.qos, e.retain, e.message?.id]),
          [
            [9, 'pubcomp', 2, true, undefined],
            [65535, 'puback', 1, false, m1.id],
          ],
        )
        assert.equal(await f.messageBodies(), 2)
        // A resend with DUP (same stage, same message) changes nothing.
        await b.apply([{ op: 'inflight.set', clientId: 'c1', packetId: 65535, stage: 'puback', message: m1 }])
        assert.equal(await f.messageBodies(), 2)

        await b.apply([
          { op: 'inflight.clear', clientId: 'c1', packetId: 65535 },
          { op: 'inflight.clear', clientId: 'c1', packetId: 9 },
          { op: 'inflight.clear', clientId: 'c1', packetId: 1234 },
        ])
        s = (await loaded(b, 'c1'))!
        assert.deepEqual(s.inflight, [])
        assert.equal(await f.messageBodies(), 1, 'only the queued m3 is left')

        // A later delivery is ordered after the earlier ones, whatever its packet id.
        const m4 = msg('t/4', 'four', 1)
        await b.apply([
          { op: 'inflight.set', clientId: 'c1', packetId: 50, stage: 'puback', message: m4 },
          { op: 'inflight.set', clientId: 'c1', packetId: 3, stage: 'pubrec', message: m3 },
          { op: 'inflight.set', clientId: 'c1', packetId: 50, stage: 'puback', retain: true },
        ])
        s = (await loaded(b, 'c1'))!
        assert.deepEqual(
          s.inflight.map((e) => [e.packetId, e.retain, e.message?.id]),
          [
            [50, true, m4.id],
            [3, false, m3.id],
          ],
        )
      })
    })

    test('inbound QoS 2 packet ids awaiting PUBREL: add, remove, loaded ascending', async () => {
      await withStore(undefined, async (_f, b) => {
        await b.apply([
          save('c1'),
          { op: 'incoming.add', clientId: 'c1', packetId: 700 },
          { op: 'incoming.add', clientId: 'c1', packetId: 2 },
          { op: 'incoming.add', clientId: 'c1', packetId: 65535 },
          { op: 'incoming.add', clientId: 'c1', packetId: 2 },
          { op: 'incoming.remove', clientId: 'c1', packetId: 700 },
          { op: 'incoming.remove', clientId: 'c1', packetId: 5 },
        ])
        assert.deepEqual((await loaded(b, 'c1'))!.incoming, [2, 65535])
      })
    })

    test('ops on a client without a saved session store nothing (queue.push says no_session)', async () => {
      await withStore(undefined, async (f, b) => {
        const { results } = await b.apply([
          { op: 'sub.add', clientId: 'ghost', filter: 'a', qos: 1 },
          push('ghost', msg('a', 'x')),
          { op: 'queue.remove', clientId: 'ghost', count: 3 },
          { op: 'inflight.set', clientId: 'ghost', packetId: 1, stage: 'puback', message: msg('a', 'y') },
          { op: 'incoming.add', clientId: 'ghost', packetId: 1 },
        ])
        assert.deepEqual(results, [null, { kind: 'dropped', reason: 'no_session' }, { kind: 'removed', count: 0 }, null, null])
        assert.deepEqual(await f.stateKeys(), [])
        assert.deepEqual((await b.load()).sessions, [])
      })
    })

    test('session.delete removes every piece of the client and its message references; nothing is left', async () => {
      await withStore(undefined, async (f, b) => {
        const shared = msg('s', 'shared')
        const setup: PersistOp[] = []
        for (const c of ['gone', 'kept']) {
          setup.push(
            save(c, { will: { topic: 'w', payload: Buffer.from('bye'), qos: 1, retain: false } }),
            { op: 'sub.add', clientId: c, filter: 'x/#', qos: 2 },
            push(c, shared),
            push(c, msg('s', `own-${c}`)),
            { op: 'inflight.set', clientId: c, packetId: 4, stage: 'puback', message: msg('s', `inflight-${c}`) },
            { op: 'inflight.set', clientId: c, packetId: 5, stage: 'pubcomp' },
            { op: 'incoming.add', clientId: c, packetId: 6 },
          )
        }
        await b.apply(setup)
        const keysOfKept = async () => (await f.stateKeys()).filter((k) => !k.includes('gone'))
        await b.apply([{ op: 'session.delete', clientId: 'gone' }])
        assert.deepEqual(
          (await b.load()).sessions.map((s) => s.clientId),
          ['kept'],
        )
        assert.ok(!(await f.stateKeys()).some((k) => k.includes('gone')), 'no key of the deleted client')
        assert.equal(await f.messageBodies(), 3, "the shared body stays for 'kept', the others of 'gone' are deleted")
        assert.ok((await keysOfKept()).length > 0)
        await b.apply([{ op: 'session.delete', clientId: 'kept' }, { op: 'session.delete', clientId: 'never-existed' }])
        assert.deepEqual(await f.stateKeys(), [])
        assert.equal(await f.messageBodies(), 0)
      })
    })

    test('clean sessions: connect, subscribe, receive, disconnect → no keys left', async () => {
      await withStore(undefined, async (f, b) => {
        for (let i = 0; i < 20; i++) {
          const c = `clean-${i}`
          await b.apply([
            save(c, { clean: true, will: { topic: 'lwt', payload: Buffer.from('x'), qos: 0, retain: false } }),
            { op: 'sub.add', clientId: c, filter: '#', qos: 1 },
            { op: 'inflight.set', clientId: c, packetId: 1, stage: 'puback', message: msg('t', `m${i}`) },
            { op: 'incoming.add', clientId: c, packetId: 2 },
          ])
        }
        assert.ok((await f.stateKeys()).length > 0)
        await b.apply(Array.from({ length: 20 }, (_, i) => ({ op: 'session.delete', clientId: `clean-${i}` }) as PersistOp))
        assert.deepEqual(await f.stateKeys(), [])
        assert.equal(await f.messageBodies(), 0)
      })
    })

    test('the ops of one client apply in batch order: delete then save starts empty; save then delete leaves nothing', async () => {
      await withStore(undefined, async (f, b) => {
        await b.apply([save('c1'), { op: 'sub.add', clientId: 'c1', filter: 'old', qos: 1 }, push('c1', msg('t', 'old'))])
        await b.apply([{ op: 'session.delete', clientId: 'c1' }, save('c1', { epoch: 2 }), { op: 'sub.add', clientId: 'c1', filter: 'new', qos: 0 }])
        const s = (await loaded(b, 'c1'))!
        assert.equal(s.session.epoch, 2)
        assert.deepEqual(s.subscriptions, [{ filter: 'new', qos: 0 }])
        assert.deepEqual(s.queue, [])
        await b.apply([save('c2'), push('c2', msg('t', 'x')), { op: 'session.delete', clientId: 'c2' }, push('c2', msg('t', 'late'))])
        assert.deepEqual((await b.load()).sessions.map((x) => x.clientId), ['c1'])
        assert.equal(await f.messageBodies(), 0)
      })
    })

    test('expire removes the sessions whose expiresAt has passed, with all their state, and keeps the others', async () => {
      await withStore(undefined, async (f, b) => {
        const now = 1_800_000_000_000
        await b.apply([
          save('old-1', { connected: false, expiresAt: now - 1 }),
          push('old-1', msg('t', 'queued for old-1')),
          { op: 'sub.add', clientId: 'old-1', filter: 'a', qos: 1 },
          { op: 'inflight.set', clientId: 'old-1', packetId: 1, stage: 'puback', message: msg('t', 'in flight') },
          { op: 'incoming.add', clientId: 'old-1', packetId: 2 },
          save('old-2', { connected: false, expiresAt: now }),
          save('later', { connected: false, expiresAt: now + 1 }),
          save('online', { expiresAt: null }),
          // Was due, but its client came back before the sweep: no longer expires.
          save('back', { connected: false, expiresAt: now - 10 }),
          save('back', { expiresAt: null }),
          // Had a later expiry, then disconnected again earlier: the latest record counts.
          save('moved', { connected: false, expiresAt: now + 1000 }),
        ])
        await b.apply([save('moved', { connected: false, expiresAt: now - 5 })])
        assert.deepEqual(await b.expire(now), ['moved', 'old-1', 'old-2'])
        assert.deepEqual((await b.load()).sessions.map((s) => s.clientId), ['back', 'later', 'online'])
        assert.ok(!(await f.stateKeys()).some((k) => /old-|moved/.test(k)), 'no key of an expired session is left')
        assert.equal(await f.messageBodies(), 0)
        assert.deepEqual(await b.expire(now), [], 'nothing twice')
        assert.deepEqual(await b.expire(now + 1), ['later'])
        assert.deepEqual(await b.expire(now + 10 ** 9), [])
      })
    })

    test('retained messages: set, replace, delete; loaded sorted by topic with retain set', async () => {
      await withStore(undefined, async (f, b) => {
        const r1 = msg('b/1', BINARY, 1, { publisher: 'p', timestamp: 5 })
        const r2 = msg('a/1', 'old', 0)
        const r2b = msg('a/1', 'new', 2)
        const r3 = msg('c', 'gone', 1)
        await b.apply([
          { op: 'retained.set', topic: 'b/1', message: r1 },
          { op: 'retained.set', topic: 'a/1', message: r2 },
          { op: 'retained.set', topic: 'c', message: r3 },
          { op: 'retained.set', topic: 'a/1', message: r2b },
          { op: 'retained.delete', topic: 'c' },
          { op: 'retained.delete', topic: 'nothing/here' },
        ])
        const { retained } = await b.load()
        assert.deepEqual(retained, [
          { ...r2b, retain: true },
          { ...r1, retain: true },
        ])
        assert.ok(retained[1]!.payload.equals(BINARY))
        assert.equal(await f.messageBodies(), 0, 'retained messages are not queue bodies')
        await b.apply([
          { op: 'retained.delete', topic: 'a/1' },
          { op: 'retained.delete', topic: 'b/1' },
        ])
        assert.deepEqual(await f.stateKeys(), [])
      })
    })

    test('matchRetained: exact topics, +, #, the parent level of #, $ topics, siblings sharing a prefix, empty levels', async () => {
      await withStore(undefined, async (_f, b) => {
        const topics = ['a', 'a/b', 'a/b/c', 'a/bc', 'a/b/c/d', 'ab', 'x/b', '/lead', 'a//c', '$SYS/load', '$SYS/a/b', 'é/ü', 'a/b/é']
        await b.apply(topics.map((t) => ({ op: 'retained.set', topic: t, message: msg(t, `v:${t}`) }) as PersistOp))
        const match = async (filter: string) => (await b.matchRetained(filter)).map((m) => m.topic)
        const sorted = (list: string[]) => [...list].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
        assert.deepEqual(await match('a/b'), ['a/b'])
        assert.deepEqual(await match('a/b/nothing'), [])
        assert.deepEqual(await match('a/+'), sorted(['a/b', 'a/bc']))
        assert.deepEqual(await match('a/b/#'), sorted(['a/b', 'a/b/c', 'a/b/c/d', 'a/b/é']))
        assert.deepEqual(await match('a/#'), sorted(['a', 'a/b', 'a/b/c', 'a/bc', 'a/b/c/d', 'a//c', 'a/b/é']))
        assert.deepEqual(await match('+/b'), sorted(['a/b', 'x/b']))
        assert.deepEqual(await match('a/+/c'), sorted(['a/b/c', 'a//c']))
        assert.deepEqual(await match('+'), sorted(['a', 'ab']))
        assert.deepEqual(await match('+/+'), sorted(['a/b', 'a/bc', 'x/b', '/lead', 'é/ü']))
        assert.deepEqual(await match('#'), sorted(topics.filter((t) => !t.startsWith('$'))), '# does not match $ topics')
        assert.deepEqual(await match('$SYS/#'), sorted(['$SYS/load', '$SYS/a/b']))
        assert.deepEqual(await match('$SYS/+'), ['$SYS/load'])
        assert.deepEqual(await match('é/+'), ['é/ü'])
        const [one] = await b.matchRetained('a/b/c')
        assert.equal(one!.payload.toString(), 'v:a/b/c')
        assert.equal(one!.retain, true)
        await assert.rejects(b.matchRetained('a/#/b'), TypeError)
      })
    })

    test('replaying a batch with the same batchId applies it once and returns the same results', async () => {
      await withStore({ maxMessages: 2, policy: 'drop_oldest' }, async (_f, b) => {
        const batch: PersistOp[] = [
          save('c1'),
          push('c1', msg('t', '1')),
          push('c1', msg('t', '2')),
          push('c1', msg('t', '3')),
          { op: 'queue.remove', clientId: 'c1', count: 1 },
          save('c2'),
          push('c2', msg('t', 'x')),
          { op: 'retained.set', topic: 'r', message: msg('r', 'v') },
        ]
        const first = await b.apply(batch, { batchId: 'batch-1' })
        const again = await b.apply(batch, { batchId: 'batch-1' })
        assert.deepEqual(again, first)
        const snap = await b.load()
        assert.deepEqual(snap.sessions.map((s) => s.queue.map((e) => e.message.payload.toString())), [['3'], ['x']])
        assert.equal(snap.retained.length, 1)
        // A different id is a different batch.
        await b.apply([push('c2', msg('t', 'y'))], { batchId: 'batch-2' })
        await b.apply([push('c2', msg('t', 'y'))], { batchId: 'batch-3' })
        assert.equal((await loaded(b, 'c2'))!.queue.length, 2)
      })
    })

    test('a malformed op rejects the whole batch with PersistOpError naming it, and nothing is applied', async () => {
      await withStore(undefined, async (f, b) => {
        const bad: unknown[] = [
          { op: 'queue.push', clientId: 'c1', message: { ...msg('t', 'x'), payload: 'not a buffer' } },
          { op: 'sub.add', clientId: 'c1', filter: 'a/#/b', qos: 1 },
          { op: 'sub.add', clientId: '', filter: 'a', qos: 1 },
          { op: 'inflight.set', clientId: 'c1', packetId: 0, stage: 'puback' },
          { op: 'inflight.set', clientId: 'c1', packetId: 1, stage: 'pubwhat' },
          { op: 'retained.set', topic: 'a/+', message: msg('a/+', 'x') },
          { op: 'session.save', clientId: 'c1', session: { ...session(), epoch: -1 } },
          { op: 'queue.remove', clientId: 'c1', count: 1.5 },
          { op: 'nope', clientId: 'c1' },
        ]
        for (const op of bad) {
          await assert.rejects(b.apply([save('c1'), op as PersistOp]), (err: unknown) => {
            assert.ok(err instanceof PersistOpError, String(err))
            assert.equal(err.index, 1)
            assert.match(err.message, /^ops\[1\]/)
            return true
          })
        }
        assert.deepEqual(await f.stateKeys(), [])
      })
    })

    test('load restores more sessions than a page, each with its own state, sharing message objects', async () => {
      await withStore(undefined, async (_f, b) => {
        const n = 1200
        const common = msg('all', 'for everyone')
        const ops: PersistOp[] = []
        for (let i = 0; i < n; i++) {
          const c = `bulk-${String(i).padStart(4, '0')}`
          ops.push(save(c, { epoch: i }), { op: 'sub.add', clientId: c, filter: `c/${i}`, qos: 1 }, push(c, common), push(c, msg('own', `own-${i}`)))
        }
        await b.apply(ops)
        const snap = await b.load()
        assert.equal(snap.sessions.length, n)
        snap.sessions.forEach((s, i) => {
          assert.equal(s.clientId, `bulk-${String(i).padStart(4, '0')}`)
          assert.equal(s.session.epoch, i)
          assert.deepEqual(s.subscriptions, [{ filter: `c/${i}`, qos: 1 }])
          assert.deepEqual(s.queue.map((e) => e.message.payload.toString()), ['for everyone', `own-${i}`])
        })
      })
    })

    test('a closed backend refuses work', async () => {
      const fixture = await factory({})
      await fixture.close()
      await assert.rejects(fixture.backend.apply([save('c1')]), /closed/)
      await assert.rejects(fixture.backend.load(), /closed/)
      assert.equal(fixture.backend.health().connected, false)
    })
  })
}
