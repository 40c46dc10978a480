// The plugin chain: order, first definite answer, fail-closed errors and
// timeouts, batching and the authorizePublish cache. The plugins are small
// objects written here; the chain is the real one.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, describe, test } from 'node:test'
import {
  ConnackCode,
  PluginChain,
  SUBACK_FAILURE,
  connackCodeFor,
  registeredHooks,
  resolveUnansweredAuthentication,
  type AuthLogger,
  type ClientInfo,
  type Plugin,
  type PublishAuthorizationItem,
} from 'fbroker'

interface LogEntry {
  level: string
  obj: Record<string, unknown>
  msg: string
}

function captureLogger(): AuthLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = []
  const at = (level: string) => (obj: object, msg?: string) => entries.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' })
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)
process.on('unhandledRejection', onUnhandled)
after(() => {
  process.off('unhandledRejection', onUnhandled)
  assert.deepEqual(unhandled, [], 'a hook promise became an unhandled rejection')
})

const alice: ClientInfo = { id: 'c-alice', username: 'alice', address: '127.0.0.1:50000', protocolVersion: 4 }
const anon: ClientInfo = { id: 'c-anon', address: '127.0.0.1:50001', protocolVersion: 5 }
const pw = Buffer.from('pw')

function item(client: ClientInfo, topic: string, payload = 'x', qos = 0, retain = false): PublishAuthorizationItem {
  return { client, topic, payload: Buffer.from(payload), qos, retain }
}

/** A plugin whose hooks record their calls and answer from `answers`. */
function recorder(name: string, answers: Partial<Record<'authenticate' | 'authorizeSubscribe' | 'authorizePublish', unknown>>) {
  const calls: { hook: string; args: unknown[] }[] = []
  const plugin: Plugin = { name }
  for (const [hook, answer] of Object.entries(answers)) {
    ;(plugin as unknown as Record<string, unknown>)[hook] = (...args: unknown[]) => {
      calls.push({ hook, args })
      return typeof answer === 'function' ? (answer as (...a: unknown[]) => unknown)(...args) : answer
    }
  }
  return { plugin, calls }
}

describe('registeredHooks', () => {
  test('reports only the hooks some plugin defines as a function', () => {
    assert.deepEqual(registeredHooks([]), { authenticate: false, authorizeSubscribe: false, authorizePublish: false })
    const a = { name: 'a', authenticate: () => true }
    const b = { name: 'b', authorizePublish: async () => true, authorizeSubscribe: undefined }
    assert.deepEqual(registeredHooks([a, b]), { authenticate: true, authorizeSubscribe: false, authorizePublish: true })
    assert.deepEqual(new PluginChain([a, b]).hooks, registeredHooks([a, b]))
  })
})

describe('PluginChain.authenticate', () => {
  test('asks plugins in order; undefined and null pass; the first definite answer wins', async () => {
    const order: string[] = []
    const mk = (name: string, answer: unknown): Plugin => ({
      name,
      authenticate: async () => {
        order.push(name)
        return answer as boolean
      },
    })
    const chain = new PluginChain([mk('none', undefined), { name: 'no-hook' }, mk('null', null), mk('yes', true), mk('never', false)])
    const decision = await chain.authenticate(alice, 'alice', pw)
    assert.deepEqual(decision, { outcome: 'allow', returnCode: 0, cause: 'answer', plugin: 'yes' })
    assert.deepEqual(order, ['none', 'null', 'yes'])
  })

  test('hooks receive the client, the user name and the password Buffer, with the plugin as this', async () => {
    let seen: unknown[] = []
    const plugin = {
      name: 'p',
      marker: 42,
      authenticate(this: { marker: number }, ...args: unknown[]) {
        seen = [this.marker, ...args]
        return true
      },
    }
    await new PluginChain([plugin]).authenticate(alice, 'alice', pw)
    assert.deepEqual(seen, [42, alice, 'alice', pw])
  })

  test('false refuses with 4 when credentials were given, 5 when not', async () => {
    const chain = new PluginChain([{ name: 'no', authenticate: () => false }])
    assert.deepEqual(await chain.authenticate(alice, 'alice', pw), { outcome: 'deny', returnCode: 4, cause: 'answer', plugin: 'no' })
    assert.equal((await chain.authenticate(alice, 'alice', undefined)).returnCode, ConnackCode.BAD_USERNAME_OR_PASSWORD)
    assert.equal((await chain.authenticate(anon, undefined, undefined)).returnCode, ConnackCode.NOT_AUTHORIZED)
  })

  test('a number is the return code; 0 accepts; MQTT 5 reason codes pass through', async () => {
    const answers = [3, 0, 0x8a]
    const chain = new PluginChain([{ name: 'n', authenticate: () => answers.shift()! }])
    assert.deepEqual(await chain.authenticate(alice, 'alice', pw), { outcome: 'deny', returnCode: 3, cause: 'answer', plugin: 'n' })
    assert.deepEqual(await chain.authenticate(alice, 'alice', pw), { outcome: 'allow', returnCode: 0, cause: 'answer', plugin: 'n' })
    assert.equal((await chain.authenticate(alice, 'alice', pw)).returnCode, 0x8a)
  })

  test('no answer from any plugin is outcome "none", settled by allow_anonymous', async () => {
    const chain = new PluginChain([{ name: 'pass', authenticate: () => undefined }, { name: 'other' }])
    assert.deepEqual(await chain.authenticate(anon, undefined, undefined), { outcome: 'none', returnCode: 0, cause: 'no-answer' })
    assert.deepEqual(await new PluginChain([]).authenticate(anon, undefined, undefined), { outcome: 'none', returnCode: 0, cause: 'no-answer' })
    assert.deepEqual(resolveUnansweredAuthentication(true, undefined, undefined), { allow: true, returnCode: 0 })
    assert.deepEqual(resolveUnansweredAuthentication(false, undefined, undefined), { allow: false, returnCode: 5 })
    assert.deepEqual(resolveUnansweredAuthentication(false, 'alice', pw), { allow: false, returnCode: 4 })
  })

  test('a throwing or rejecting hook denies (not authorized, like an engine timeout), is logged, and stops the chain', async () => {
    for (const authenticate of [
      () => {
        throw new Error('boom')
      },
      async () => {
        throw new Error('boom')
      },
    ]) {
      const logger = captureLogger()
      const later = recorder('later', { authenticate: true })
      const chain = new PluginChain([{ name: 'bad', authenticate }, later.plugin], { logger })
      const decision = await chain.authenticate(alice, 'alice', pw)
      assert.deepEqual(decision, { outcome: 'deny', returnCode: ConnackCode.NOT_AUTHORIZED, cause: 'error', plugin: 'bad' })
      assert.equal(later.calls.length, 0)
      assert.equal(logger.entries.length, 1)
      assert.equal(logger.entries[0]!.level, 'error')
      assert.match(logger.entries[0]!.msg, /plugin "bad": authenticate failed: boom; denied/)
      assert.equal(logger.entries[0]!.obj.clientId, 'c-alice')
    }
  })

  test('a hook that does not settle in time denies (fail closed); its late rejection is harmless', async () => {
    const logger = captureLogger()
    const slow: Plugin = {
      name: 'slow',
      authenticate: () => new Promise((_, reject) => setTimeout(() => reject(new Error('too late')), 150)),
    }
    const chain = new PluginChain([slow, { name: 'never', authenticate: () => true }], { logger, hookTimeoutMs: 40 })
    const started = performance.now()
    const decision = await chain.authenticate(alice, 'alice', pw)
    const elapsed = performance.now() - started
    assert.deepEqual(decision, { outcome: 'deny', returnCode: 5, cause: 'timeout', plugin: 'slow' })
    assert.ok(elapsed >= 35 && elapsed < 140, `decided after ${elapsed} ms`)
    assert.match(logger.entries[0]!.msg, /plugin "slow": authenticate did not answer within 40 ms; denied/)
    await sleep(200) // let the late rejection happen: the after() hook checks it was handled
  })

  test('an answer of the wrong type denies and is logged', async () => {
    for (const answer of ['yes', 7, -1, 1.5, {}]) {
      const logger = captureLogger()
      const chain = new PluginChain([{ name: 'odd', authenticate: () => answer as unknown as boolean }], { logger })
      const decision = await chain.authenticate(alice, 'alice', pw)
      assert.equal(decision.outcome, 'deny', String(answer))
      assert.equal(decision.cause, 'invalid')
      assert.match(logger.entries[0]!.msg, /plugin "odd": authenticate returned .* expected true, false/)
    }
  })
})

describe('PluginChain.authorizeSubscribe', () => {
  test('decides every filter of a SUBSCRIBE: QoS caps, false refuses, undefined passes, no answer grants', async () => {
    const first = recorder('first', {
      authorizeSubscribe: (_c: ClientInfo, s: { topic: string }) => (s.topic.startsWith('pass/') ? undefined : s.topic === 'cap1' ? 1 : undefined),
    })
    const second = recorder('second', {
      authorizeSubscribe: (_c: ClientInfo, s: { topic: string }) =>
        s.topic === 'pass/denied' ? false : s.topic === 'pass/true' ? true : s.topic === 'pass/0x80' ? 0x80 : undefined,
    })
    const chain = new PluginChain([first.plugin, second.plugin])
    const granted = await chain.authorizeSubscribe(alice, [
      { topic: 'cap1', qos: 2 },
      { topic: 'cap1', qos: 0 },
      { topic: 'pass/denied', qos: 1 },
      { topic: 'pass/true', qos: 2 },
      { topic: 'pass/0x80', qos: 1 },
      { topic: 'free/#', qos: 2 },
    ])
    assert.deepEqual(granted, [1, 0, SUBACK_FAILURE, 2, SUBACK_FAILURE, 2])
    assert.deepEqual(
      second.calls.map((c) => (c.args[1] as { topic: string }).topic),
      ['pass/denied', 'pass/true', 'pass/0x80', 'free/#'],
    )
  })

  test('an error, timeout or invalid answer refuses only that filter, and is logged', async () => {
    const logger = captureLogger()
    const chain = new PluginChain(
      [
        {
          name: 'flaky',
          authorizeSubscribe: (_c, s) => {
            if (s.topic === 'throw') throw new Error('bad filter')
            if (s.topic === 'hang') return new Promise(() => {})
            if (s.topic === 'weird') return 3
            return s.qos
          },
        },
      ],
      { logger, hookTimeoutMs: 30 },
    )
    const granted = await chain.authorizeSubscribe(alice, [
      { topic: 'ok', qos: 1 },
      { topic: 'throw', qos: 1 },
      { topic: 'hang', qos: 1 },
      { topic: 'weird', qos: 1 },
    ])
    assert.deepEqual(granted, [1, 0x80, 0x80, 0x80])
    const messages = logger.entries.map((e) => e.msg).sort()
    assert.equal(messages.length, 3)
    assert.match(messages.join('\n'), /authorizeSubscribe failed: bad filter/)
    assert.match(messages.join('\n'), /authorizeSubscribe did not answer within 30 ms/)
    assert.match(messages.join('\n'), /authorizeSubscribe returned 3, expected a QoS 0–2/)
  })

  test('without any authorizeSubscribe hook every filter is granted as requested', async () => {
    assert.deepEqual(await new PluginChain([{ name: 'a', authenticate: () => true }]).authorizeSubscribe(alice, [{ topic: 'a', qos: 2 }, { topic: 'b', qos: 0 }]), [2, 0])
  })
})

describe('PluginChain.authorizePublishBatch', () => {
  test('decides each message of a batch, in order through the plugins, with the packet fields', async () => {
    const first = recorder('first', {
      authorizePublish: (_c: ClientInfo, p: { topic: string }) => (p.topic === 'deny' ? false : p.topic === 'allow' ? true : undefined),
    })
    const second = recorder('second', {
      authorizePublish: async (c: ClientInfo, p: { topic: string; payload: Buffer }) => (c.username === undefined ? false : p.payload.toString() !== 'bad' ? undefined : false),
    })
    const chain = new PluginChain([first.plugin, second.plugin])
    const results = await chain.authorizePublishBatch([
      item(alice, 'deny'),
      item(alice, 'allow'),
      item(alice, 'other', 'good'),
      item(alice, 'other', 'bad'),
      item(anon, 'other'),
    ])
    assert.deepEqual(results, [false, true, true, false, false])
    assert.equal(first.calls.length, 5)
    assert.equal(second.calls.length, 3)
    assert.deepEqual(second.calls[0]!.args, [alice, { topic: 'other', payload: Buffer.from('good'), qos: 0, retain: false }])
  })

  test('without any authorizePublish hook every message is allowed and no hook runs', async () => {
    const chain = new PluginChain([{ name: 'a', authenticate: () => false }])
    assert.deepEqual(await chain.authorizePublishBatch([item(alice, 'a'), item(anon, 'b')]), [true, true])
    assert.deepEqual(await chain.authorizePublishBatch([]), [])
  })

  test('errors, rejections, timeouts and invalid answers deny; one log line per plugin and cause per batch', async () => {
    const logger = captureLogger()
    const chain = new PluginChain(
      [
        {
          name: 'p',
          authorizePublish: (_c, packet) => {
            if (packet.topic.startsWith('throw')) throw new Error(`cannot decide ${packet.topic}`)
            if (packet.topic === 'reject') return Promise.reject(new Error('rejected'))
            if (packet.topic === 'hang') return new Promise(() => {})
            if (packet.topic === 'weird') return 1 as unknown as boolean
            return true
          },
        },
      ],
      { logger, hookTimeoutMs: 30 },
    )
    const results = await chain.authorizePublishBatch([
      item(alice, 'ok'),
      item(alice, 'throw/1'),
      item(alice, 'throw/2'),
      item(alice, 'throw/3'),
      item(alice, 'reject'),
      item(alice, 'hang'),
      item(alice, 'weird'),
    ])
    assert.deepEqual(results, [true, false, false, false, false, false, false])
    const errors = logger.entries.filter((e) => e.level === 'error')
    assert.equal(errors.length, 3, errors.map((e) => e.msg).join('\n')) // error (4 messages), timeout, invalid
    const errorLine = errors.find((e) => e.obj.cause === 'error')!
    assert.equal(errorLine.obj.count, 4)
    assert.match(errorLine.msg, /authorizePublish failed: cannot decide throw\/1; denied \(4 messages in this batch; first shown\)/)
    assert.ok(errors.some((e) => e.obj.cause === 'timeout' && e.obj.topic === 'hang'))
    assert.ok(errors.some((e) => e.obj.cause === 'invalid' && /returned 1, expected true, false or undefined/.test(e.msg)))
  })

  test('authorizePublish(item) is a batch of one', async () => {
    const chain = new PluginChain([{ name: 'p', authorizePublish: (_c, p) => p.retain }])
    assert.equal(await chain.authorizePublish(item(alice, 't', 'x', 1, true)), true)
    assert.equal(await chain.authorizePublish(item(alice, 't', 'x', 1, false)), false)
  })
})

describe('PluginChain authorizePublish cache', () => {
  function counting(answer: (topic: string) => boolean | undefined | Promise<boolean | undefined>) {
    const calls: string[] = []
    const plugin: Plugin = {
      name: 'counted',
      authorizePublish: (c, p) => {
        calls.push(`${c.id}:${p.topic}`)
        return answer(p.topic)
      },
    }
    return { plugin, calls }
  }

  test('with TTL 0 (the default) every message asks the plugins', async () => {
    const { plugin, calls } = counting(() => true)
    const chain = new PluginChain([plugin])
    await chain.authorizePublishBatch([item(alice, 't'), item(alice, 't')])
    await chain.authorizePublishBatch([item(alice, 't')])
    assert.equal(calls.length, 3)
    assert.equal(chain.publishCacheSize, 0)
  })

  test('reuses a decision per client and topic until the TTL expires', async () => {
    const { plugin, calls } = counting((topic) => topic !== 'denied')
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 80 })
    const bob: ClientInfo = { ...alice, id: 'c-bob', username: 'bob' }
    assert.deepEqual(await chain.authorizePublishBatch([item(alice, 'a'), item(alice, 'denied'), item(bob, 'a')]), [true, false, true])
    assert.equal(calls.length, 3)
    // Same client and topic, different payload/QoS/retain: answered from the cache.
    assert.deepEqual(
      await chain.authorizePublishBatch([item(alice, 'a', 'other', 1, true), item(alice, 'denied', 'y', 2), item(bob, 'a')]),
      [true, false, true],
    )
    assert.equal(calls.length, 3)
    await sleep(100)
    assert.deepEqual(await chain.authorizePublishBatch([item(alice, 'a'), item(alice, 'denied')]), [true, false])
    assert.deepEqual(calls.slice(3), ['c-alice:a', 'c-alice:denied'])
  })

  test('also caches "no plugin answered" (allow), keyed by user name as well as client id', async () => {
    const { plugin, calls } = counting(() => undefined)
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 10_000 })
    await chain.authorizePublishBatch([item(alice, 't')])
    await chain.authorizePublishBatch([item(alice, 't')])
    assert.equal(calls.length, 1)
    // The same client id with another user name (a takeover by someone else) is asked again.
    await chain.authorizePublishBatch([item({ ...alice, username: 'mallory' }, 't')])
    assert.equal(calls.length, 2)
  })

  test('identical questions in flight share one evaluation', async () => {
    const { plugin, calls } = counting(async () => {
      await sleep(20)
      return true
    })
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 10_000 })
    const [r1, r2] = await Promise.all([
      chain.authorizePublishBatch([item(alice, 't'), item(alice, 't'), item(alice, 'u')]),
      chain.authorizePublishBatch([item(alice, 't')]),
    ])
    assert.deepEqual(r1, [true, true, true])
    assert.deepEqual(r2, [true])
    assert.deepEqual(calls, ['c-alice:t', 'c-alice:u'])
  })

  test('errors and timeouts are not cached', async () => {
    let fail = true
    const { plugin, calls } = counting(() => {
      if (fail) throw new Error('backend down')
      return true
    })
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 10_000 })
    assert.deepEqual(await chain.authorizePublishBatch([item(alice, 't')]), [false])
    fail = false
    assert.deepEqual(await chain.authorizePublishBatch([item(alice, 't')]), [true])
    assert.equal(calls.length, 2)
  })

  test('forgetClient and clearCache drop cached decisions', async () => {
    const { plugin, calls } = counting(() => true)
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 10_000 })
    const bob: ClientInfo = { ...alice, id: 'c-bob', username: 'bob' }
    await chain.authorizePublishBatch([item(alice, 'a'), item(alice, 'b'), item(bob, 'a')])
    assert.equal(chain.publishCacheSize, 3)
    chain.forgetClient('c-alice')
    assert.equal(chain.publishCacheSize, 1)
    await chain.authorizePublishBatch([item(alice, 'a'), item(bob, 'a')])
    assert.equal(calls.length, 4)
    chain.clearCache()
    assert.equal(chain.publishCacheSize, 0)
  })

  test('the cache is bounded: the oldest entry is evicted', async () => {
    const { plugin, calls } = counting(() => true)
    const chain = new PluginChain([plugin], { publishCacheTtlMs: 10_000, publishCacheMaxEntries: 3 })
    await chain.authorizePublishBatch(['t1', 't2', 't3', 't4'].map((t) => item(alice, t)))
    assert.equal(chain.publishCacheSize, 3)
    await chain.authorizePublishBatch([item(alice, 't4'), item(alice, 't2')])
    assert.equal(calls.length, 4, 'recent entries are cached')
    await chain.authorizePublishBatch([item(alice, 't1')])
    assert.equal(calls.length, 5, 't1 was evicted')
    assert.equal(chain.publishCacheSize, 3)
  })

  test('rejects bad options', () => {
    assert.throws(() => new PluginChain([], { hookTimeoutMs: 0 }), /hookTimeoutMs must be a number of at least 1/)
    assert.throws(() => new PluginChain([], { publishCacheTtlMs: -1 }), /publishCacheTtlMs/)
    assert.throws(() => new PluginChain([], { publishCacheMaxEntries: 0 }), /publishCacheMaxEntries/)
  })
})

describe('PluginChain.close and return codes', () => {
  test('close() calls each plugin close once, last first; a failing close is logged', async () => {
    const logger = captureLogger()
    const closed: string[] = []
    const chain = new PluginChain(
      [
        { name: 'a', close: () => void closed.push('a') },
        {
          name: 'b',
          close: async () => {
            closed.push('b')
            throw new Error('close failed')
          },
        },
        { name: 'c' },
      ],
      { logger },
    )
    await Promise.all([chain.close(), chain.close()])
    assert.deepEqual(closed, ['b', 'a'])
    assert.match(logger.entries[0]!.msg, /plugin "b": close failed: close failed/)
  })

  test('connackCodeFor translates between MQTT 3.1.1 return codes and MQTT 5 reason codes', () => {
    assert.equal(connackCodeFor(4, 5), 0x86)
    assert.equal(connackCodeFor(5, 5), 0x87)
    assert.equal(connackCodeFor(3, 5), 0x88)
    assert.equal(connackCodeFor(0, 5), 0)
    assert.equal(connackCodeFor(0x8a, 5), 0x8a)
    assert.equal(connackCodeFor(4, 4), 4)
    assert.equal(connackCodeFor(0x86, 4), 4)
    assert.equal(connackCodeFor(0x88, 3), 3)
    assert.equal(connackCodeFor(0x8a, 4), 5)
    assert.equal(connackCodeFor(0x80, 4), 5)
  })
})
