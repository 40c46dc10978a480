// MQTT 3.1.1 conformance: topic names, topic filters and wildcards (4.7).
//
// Every test is named after the normative statement it checks; `[fbroker]`
// marks requirements of our issue that the standard leaves open.
import { afterEach, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { brokerForSuite, target, type RunningBroker } from '../helpers/broker'
import { closeAll, rawSession, uid } from '../helpers/clients'
import { expectClosedWithoutReply } from '../helpers/expect'
import { field, frame, subscribeBytes, texts, topics } from '../helpers/packets'
import { Peer } from '../helpers/peer'

// ---------------------------------------------------------------- helpers

/**
 * Publishes from inside the broker on fbroker (a client may be barred from
 * `$` topics there), from a client on Mosquitto.
 */
async function inject(b: RunningBroker, topic: string, payload: string, opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}) {
  if (b.broker) {
    await b.broker.publish(topic, Buffer.from(payload), { qos: opts.qos ?? 0, retain: !!opts.retain })
    return
  }
  const p = await Peer.open(b.port)
  await p.publish(topic, payload, opts)
  await p.ping() // the PUBLISH has been handled once the PINGRESP is back
  p.destroy()
}

/**
 * One subscriber per filter; every topic of `universe` is published once
 * (QoS 1, payload = topic); each subscriber must receive exactly the topics
 * listed for its filter, once each.
 */
async function checkMatching(port: number, universe: string[], expected: Record<string, string[]>) {
  const end = `zz-end-${uid()}`
  const subs: Array<[string, Peer]> = []
  for (const filter of Object.keys(expected)) {
    const p = await Peer.open(port)
    assert.deepEqual(
      await p.subscribe([
        [filter, 1],
        [end, 1],
      ]),
      [1, 1],
      `SUBACK for ${JSON.stringify(filter)}`,
    )
    subs.push([filter, p])
  }
  const pub = await Peer.open(port)
  for (const t of universe) await pub.publish(t, t, { qos: 1 })
  await pub.publish(end, '', { qos: 1 })
  for (const [filter, p] of subs) {
    const got = topics(await p.drainUntil(end)).filter((t) => t !== end)
    assert.deepEqual(got.sort(), [...expected[filter]].sort(), `topics received by filter ${JSON.stringify(filter)}`)
  }
}

/**
 * Each filter, sent in a SUBSCRIBE next to a valid one, must be refused:
 * return code 0x80 on fbroker; on Mosquitto closing the connection (the
 * standard's other option) is accepted as well.
 */
async function expectRejected(port: number, filters: string[]) {
  let raw = await rawSession(port)
  for (const [i, f] of filters.entries()) {
    const ok = `ok/${uid()}`
    raw.sendBytes(
      subscribeBytes(i + 1, [
        [f, 1],
        [ok, 1],
      ]),
    )
    const ack = await raw.next()
    if (ack === null) {
      assert.equal(target, 'mosquitto', `filter ${JSON.stringify(f)}: fbroker answers 0x80 rather than closing`)
      raw = await rawSession(port)
      continue
    }
    assert.equal(ack.cmd, 'suback')
    assert.deepEqual(ack.granted, [0x80, 1], `SUBACK for ${JSON.stringify(f)}`)
  }
}

async function expectGranted(port: number, filters: string[]) {
  const p = await Peer.open(port)
  for (const f of filters) assert.deepEqual(await p.subscribe([[f, 2]]), [2], `SUBACK for ${JSON.stringify(f)}`)
}

// ------------------------------------------------------------------ tests

describe('MQTT 3.1.1 §4.7: topic names and topic filters', () => {
  const b = brokerForSuite({}, closeAll)
  afterEach(closeAll)

  test('[MQTT-4.7.1-2] # on its own or after a separator, as the last character, is a valid filter', async () => {
    await expectGranted(b.port, ['#', `h${uid()}/#`, '/#', '+/#', `h/${uid()}/+/#`])
  })

  test('[MQTT-4.7.1-2] a filter with # that is not a whole last level is rejected', async () => {
    await expectRejected(b.port, ['a/#/b', 'a#', '#/a', 'a/b#', '##', '#/', 'a/#/', '+#'])
  })

  test('[MQTT-4.7.1-3] + occupying whole levels, at any position, is a valid filter', async () => {
    await expectGranted(b.port, ['+', '+/+', '/+', '+/', `p${uid()}/+/c`, `+/p${uid()}/+`, '+/+/#'])
  })

  test('[MQTT-4.7.1-3] a filter with + that does not occupy a whole level is rejected', async () => {
    await expectRejected(b.port, ['a+', '+a', 'a/b+/c', 'a/+b', '++', 'a/++/b', 'a/+x/+'])
  })

  test('[MQTT-4.7.2-1] filters starting with # or + do not match topic names starting with $; filters naming the $ level do', async () => {
    const top = `$x${uid()}`
    const end = `dollar-end-${uid()}`
    const expected: Record<string, string[]> = {
      '#': [],
      '+': [],
      '+/bar': [],
      '+/+': [],
      '+/#': [],
      [`${top}/#`]: [top, `${top}/bar`],
      [`${top}/+`]: [`${top}/bar`],
      [`${top}/bar`]: [`${top}/bar`],
      [top]: [top],
    }
    const subs: Array<[string, Peer]> = []
    for (const filter of Object.keys(expected)) {
      const p = await Peer.open(b.port)
      await p.subscribe([
        [filter, 0],
        [end, 0],
      ])
      subs.push([filter, p])
    }
    await inject(b, `${top}/bar`, 'b')
    await inject(b, top, 't')
    await inject(b, end, '')
    for (const [filter, p] of subs) {
      const got = topics(await p.drainUntil(end)).filter((t) => t.startsWith('$'))
      assert.deepEqual(got.sort(), expected[filter].sort(), `$ topics received by ${JSON.stringify(filter)}`)
    }
  })

  test('[MQTT-4.7.2-1] $SYS topics are not matched by # or +/… filters', async () => {
    const id = uid()
    // fbroker: a $SYS message injected from inside the broker, retained and
    // then live; Mosquitto: its own retained $SYS/broker/version.
    const sys = target === 'mosquitto' ? '$SYS/broker/version' : `$SYS/t${id}/version`
    if (target !== 'mosquitto') await inject(b, sys, 'v1', { retain: true })
    const wild = await Peer.open(b.port)
    await wild.subscribe([
      ['#', 0],
      ['+/+/version', 0],
      ['+/#', 0],
    ])
    const control = await Peer.open(b.port)
    await control.subscribe([[sys, 0]])
    const [retained] = await control.take(1)
    assert.equal(retained.topic, sys, 'the $SYS message exists: it reaches a filter that names $SYS')
    const end = `sys-end-${id}`
    await wild.subscribe([[end, 0]])
    if (target !== 'mosquitto') await inject(b, sys, 'v2')
    await inject(b, end, '')
    assert.deepEqual(topics(await wild.drainUntil(end)).filter((t) => t.startsWith('$')), [])
    if (target !== 'mosquitto') {
      assert.deepEqual(texts(await control.take(1)), ['v2'])
      await inject(b, sys, '', { retain: true })
    }
  })

  test('[MQTT-4.7.2-1] retained messages on $ topics are not sent to a new # or +/… subscription', async () => {
    const t = `$r${uid()}/k`
    await inject(b, t, 'kept', { qos: 1, retain: true })
    const sub = await Peer.open(b.port)
    await sub.subscribe([
      ['#', 1],
      ['+/k', 1],
    ])
    await sub.subscribe([[t, 1]]) // its retained message marks the end of the earlier ones
    const before = await sub.drainUntil(t)
    assert.deepEqual(topics(before).filter((x) => x.startsWith('$')), [])
    await inject(b, t, '', { qos: 1, retain: true })
  })

  test('[MQTT-4.7.2-1] only a leading $ is special: wildcards match $ in later levels', async () => {
    const base = `d${uid()}`
    await checkMatching(b.port, [`${base}/$x`, `${base}/a/$`, `${base}/$`], {
      [`${base}/+`]: [`${base}/$x`, `${base}/$`],
      [`${base}/#`]: [`${base}/$x`, `${base}/a/$`, `${base}/$`],
      [`${base}/+/$`]: [`${base}/a/$`],
    })
  })

  test('[MQTT-4.7.3-1] an empty topic filter is rejected', async () => {
    await expectRejected(b.port, [''])
  })

  test('[MQTT-4.7.3-1] a PUBLISH with an empty topic name closes the connection', async () => {
    const raw = await rawSession(b.port)
    raw.sendBytes(frame(0x30, field(''), Buffer.from('x')))
    await expectClosedWithoutReply(raw, 'PUBLISH with a zero-length topic name')
  })

  test('[MQTT-4.7.3-2] a topic filter containing U+0000 closes the connection', async () => {
    const raw = await rawSession(b.port)
    raw.sendBytes(subscribeBytes(1, [[Buffer.from('nul/a\u0000b'), 0]]))
    await expectClosedWithoutReply(raw, 'SUBSCRIBE to a filter with U+0000')
  })

  test('[MQTT-4.7.3-4] matching is case-sensitive and keeps spaces, leading, trailing and empty levels as they are', async () => {
    const universe = [
      'ACCOUNTS',
      'Accounts',
      'accounts',
      'Accounts payable',
      'Accounts  payable',
      'Accounts/payable',
      '/finance',
      'finance',
      'finance/',
      'a//b',
      'a/b',
    ]
    await checkMatching(b.port, universe, {
      Accounts: ['Accounts'],
      accounts: ['accounts'],
      'Accounts payable': ['Accounts payable'],
      '/finance': ['/finance'],
      finance: ['finance'],
      'finance/': ['finance/'],
      '+/finance': ['/finance'],
      'finance/+': ['finance/'],
      'a//b': ['a//b'],
      'a/+/b': ['a//b'],
      'Accounts/+': ['Accounts/payable'],
    })
  })

  test('[MQTT-4.7.3-4] matching compares the UTF-8 bytes: no Unicode normalisation or substitution', async () => {
    const composed = 'caf\u00e9'
    const decomposed = 'cafe\u0301'
    const ligature = '\ufb01x' // "ﬁx"
    const emoji = 'u/\u{1f600}'
    const bom = 'b/\ufeffz'
    const universe = [composed, decomposed, ligature, 'fix', emoji, bom, 'b/z']
    await checkMatching(b.port, universe, {
      [composed]: [composed],
      [decomposed]: [decomposed],
      [ligature]: [ligature],
      fix: ['fix'],
      [emoji]: [emoji],
      'u/+': [emoji],
      [bom]: [bom],
      'b/z': ['b/z'],
    })
  })

  describe('wildcard matching (own broker: filters like # see every topic)', () => {
    const m = brokerForSuite({}, closeAll)

    const universe = [
      'sport',
      'sport/',
      'sport/tennis',
      'sport/tennis/player1',
      'sport/tennis/player1/ranking',
      'sport/tennis/player1/score/wimbledon',
      'sport/tennis/player2',
      'sport/badminton',
      '/sport',
      'Sport/tennis',
      'finance',
      '/finance',
      '/',
      'a',
      'a/b',
    ]
    const tennis = ['sport/tennis/player1', 'sport/tennis/player1/ranking', 'sport/tennis/player1/score/wimbledon', 'sport/tennis/player2']

    test('[MQTT-4.7.1-2] the multi-level wildcard matches its parent level and any number of child levels', async () => {
      await checkMatching(m.port, universe, {
        '#': universe,
        'sport/tennis/player1/#': ['sport/tennis/player1', 'sport/tennis/player1/ranking', 'sport/tennis/player1/score/wimbledon'],
        'sport/#': ['sport', 'sport/', 'sport/tennis', ...tennis, 'sport/badminton'],
        'sport/tennis/#': ['sport/tennis', ...tennis],
        '/#': ['/sport', '/finance', '/'],
        'a/#': ['a', 'a/b'],
        '+/tennis/#': ['sport/tennis', ...tennis, 'Sport/tennis'],
        '+/#': universe,
      })
    })

    test('[MQTT-4.7.1-3] the single-level wildcard matches exactly one level, including an empty one, at any position', async () => {
      await checkMatching(m.port, universe, {
        'sport/tennis/+': ['sport/tennis/player1', 'sport/tennis/player2'],
        'sport/+': ['sport/', 'sport/tennis', 'sport/badminton'],
        '+': ['sport', 'finance', 'a'],
        '+/+': ['sport/', 'sport/tennis', 'sport/badminton', '/sport', 'Sport/tennis', '/finance', '/', 'a/b'],
        '/+': ['/sport', '/finance', '/'],
        '+/tennis/+': ['sport/tennis/player1', 'sport/tennis/player2'],
        'sport/+/player1': ['sport/tennis/player1'],
        '+/+/+': ['sport/tennis/player1', 'sport/tennis/player2'],
        '+/+/+/+/+': ['sport/tennis/player1/score/wimbledon'],
      })
    })

    test('[fbroker] "+/+" matches "/", "a/#" matches "a", "sport/+" does not match "sport"', async () => {
      await checkMatching(m.port, ['/', 'a', 'sport', 'sport/x'], {
        '+/+': ['/', 'sport/x'],
        'a/#': ['a'],
        'sport/+': ['sport/x'],
      })
    })
  })

  describe('longest topic (own broker configured for 64 KiB topics)', () => {
    const m = brokerForSuite({ maxTopicLength: 65535, maxPacketSize: 1 << 20 }, closeAll)

    test('[MQTT-4.7.3-3] a topic name of 65535 bytes, the most a UTF-8 string can encode, is accepted and routed', async () => {
      const head = `long/${uid()}/`
      const name = head + 'x'.repeat(65535 - head.length)
      assert.equal(Buffer.byteLength(name), 65535)
      const exact = await Peer.open(m.port)
      const wild = await Peer.open(m.port)
      assert.deepEqual(await exact.subscribe([[name, 1]]), [1])
      assert.deepEqual(await wild.subscribe([[head + '+', 1]]), [1])
      const pub = await Peer.open(m.port)
      await pub.publish(name, 'long', { qos: 1 })
      for (const p of [exact, wild]) {
        const [msg] = await p.take(1)
        assert.equal(msg.topic, name)
        assert.equal(msg.payload.toString(), 'long')
      }
    })
  })
})
