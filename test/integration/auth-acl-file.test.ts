// The ACL file, end to end: Mosquitto-format `user` sections, anonymous
// `topic` lines and `pattern` lines with %c and %u, enforced by the native
// core on SUBSCRIBE, PUBLISH and every delivery (retained messages
// included), for real clients over real sockets.
import { after, afterEach, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Broker, ConfigError, hashPassword } from 'fbroker'
import { captureLogger, onPath, subackCodes, tempDir } from '../helpers/auth'
import { closeAll, ping, publish1, publish2, track, uid } from '../helpers/clients'
import { collect, expectPacket, expectSilence } from '../helpers/expect'
import { RawClient } from '../helpers/raw'
import { target } from '../helpers/broker'
import { waitUntil } from '../helpers/wait'

const skip = target === 'mosquitto' && 'fbroker auth options'
const dir = tempDir('acl')
const passwordFile = join(dir, 'passwd')
const aclFile = join(dir, 'acl')

const ACL = `# Anonymous clients: the topic lines before the first user line.
topic read public/#
topic write anon/in

# Every client. %c is the client id, %u the user name.
pattern readwrite clients/%c/#
pattern read users/%u/inbox

user alice
topic readwrite alice/#
topic read public/#
topic read anon/in

user bob
topic readwrite bob/#
topic write alice/inbox

user reader
topic read #
topic deny secret/#

user root
topic readwrite #
topic read $SYS/#
`

const USERS = ['alice', 'bob', 'reader', 'root']

before(async () => {
  const lines = await Promise.all(USERS.map(async (u) => `${u}:${await hashPassword(`${u}-pw`, { iterations: 1000 })}`))
  writeFileSync(passwordFile, lines.join('\n') + '\n')
  writeFileSync(aclFile, ACL)
})

/** A raw connection logged in as `username` (anonymous when undefined) with CONNACK 0 asserted; closed after each test. */
async function login(port: number, username: string | undefined, clientId = uid(username ?? 'anon')): Promise<RawClient> {
  const c = track(await RawClient.connect(port))
  const connect = username === undefined ? { clientId } : { clientId, username, password: Buffer.from(`${username}-pw`) }
  const ack = await c.handshake(connect)
  assert.equal(ack.returnCode, 0, `CONNACK for ${username ?? 'anonymous'}`)
  return c
}

/** The topics and payloads of the PUBLISH packets among `packets`. */
function published(packets: Array<{ cmd: string; topic?: string; payload?: Buffer }>): string[] {
  return packets.filter((p) => p.cmd === 'publish').map((p) => `${p.topic} ${p.payload?.toString()}`)
}

describe('ACL file', { skip }, () => {
  let broker: Broker
  before(async () => {
    broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, aclFile, allowAnonymous: true, logger: false })
  })
  afterEach(closeAll)
  after(() => broker.close())

  test('[fbroker] the broker reports the ACL file and its rule count', () => {
    assert.deepEqual(broker.authSummary.aclFile, { path: aclFile, rules: 13 })
  })

  test('[MQTT-3.9.3-1] [MQTT-3.8.4-4] a filter the ACL denies gets 0x80 in its place while the other filter of the same SUBSCRIBE is granted', async () => {
    const alice = await login(broker.port, 'alice')
    assert.deepEqual(await subackCodes(alice, [{ topic: 'alice/#', qos: 1 }, { topic: 'bob/#', qos: 1 }, { topic: 'public/news', qos: 2 }]), [1, 0x80, 2])
    // The refused filter really is not subscribed: bob's message on bob/x does not reach alice; her own does.
    const bob = await login(broker.port, 'bob')
    await publish1(bob, 'bob/x', 'for-bob-only')
    await publish1(alice, 'alice/x', 'for-alice')
    const got = await expectPacket(alice, 'publish')
    assert.equal(`${got.topic} ${got.payload}`, 'alice/x for-alice')
    alice.send({ cmd: 'puback', messageId: got.messageId })
    await expectSilence(alice, 200)
  })

  test('[MQTT-3.3.5-2] a PUBLISH the ACL denies is acknowledged (PUBACK, PUBREC) and dropped: subscribers get nothing and stats().publishDenied counts it', async () => {
    const bob = await login(broker.port, 'bob')
    assert.deepEqual(await subackCodes(bob, [{ topic: 'bob/#', qos: 1 }]), [1])
    const root = await login(broker.port, 'root')
    assert.deepEqual(await subackCodes(root, [{ topic: '#', qos: 0 }]), [0])
    const alice = await login(broker.port, 'alice')
    const before = broker.stats().publishDenied
    await publish1(alice, 'bob/secret', 'q1') // PUBACK asserted inside
    await publish2(alice, 'bob/secret', 'q2', 2) // PUBREC and PUBCOMP asserted inside
    alice.send({ cmd: 'publish', topic: 'bob/secret', payload: 'q0', qos: 0 })
    await ping(alice)
    assert.equal(broker.stats().publishDenied - before, 3)
    assert.deepEqual(published(await collect(bob, 300)), [])
    assert.deepEqual(published(await collect(root, 50)), [])
    // The connection stays open and allowed publishes still flow.
    await publish1(alice, 'alice/ok', 'allowed')
    assert.deepEqual(published(await collect(root, 300)), ['alice/ok allowed'])
  })

  test('[fbroker] a message on a topic the ACL denies reading is not delivered, retained ones included, while allowed ones are', async () => {
    const root = await login(broker.port, 'root')
    root.send({ cmd: 'publish', topic: 'secret/retained', payload: 'r-secret', qos: 1, messageId: 2, retain: true })
    await expectPacket(root, 'puback')
    root.send({ cmd: 'publish', topic: 'news/retained', payload: 'r-news', qos: 1, messageId: 3, retain: true })
    await expectPacket(root, 'puback')

    // reader: "topic read #" with "topic deny secret/#": subscribing to # is allowed, secret/... is filtered per message.
    const reader = await login(broker.port, 'reader')
    assert.deepEqual(await subackCodes(reader, [{ topic: '#', qos: 1 }]), [1])
    const retained = await collect(reader, 300)
    assert.deepEqual(published(retained), ['news/retained r-news'])
    for (const p of retained) if (p.cmd === 'publish' && p.qos) reader.send({ cmd: 'puback', messageId: p.messageId })

    await publish1(root, 'secret/live', 'hidden', 4)
    await publish1(root, 'news/live', 'shown', 5)
    const live = await collect(reader, 300)
    assert.deepEqual(published(live), ['news/live shown'])
    // A subscription to the denied subtree itself is refused.
    assert.deepEqual(await subackCodes(reader, [{ topic: 'secret/#', qos: 0 }], 7), [0x80])
    // Clean up the retained messages for the other tests.
    root.send({ cmd: 'publish', topic: 'secret/retained', payload: '', qos: 0, retain: true })
    root.send({ cmd: 'publish', topic: 'news/retained', payload: '', qos: 0, retain: true })
    await ping(root)
  })

  test('[fbroker] anonymous clients get the topic lines before the first user line and the patterns without %u', async () => {
    const anon = await login(broker.port, undefined, 'anon-dev1')
    assert.deepEqual(
      await subackCodes(anon, [
        { topic: 'public/#', qos: 1 },
        { topic: 'alice/#', qos: 1 },
        { topic: 'anon/in', qos: 0 },
        { topic: 'clients/anon-dev1/#', qos: 1 },
        { topic: 'users/+/inbox', qos: 0 },
      ]),
      [1, 0x80, 0x80, 1, 0x80],
    )
    // "topic write anon/in" lets it publish there, to alice ("topic read anon/in").
    const alice = await login(broker.port, 'alice')
    assert.deepEqual(await subackCodes(alice, [{ topic: 'anon/in', qos: 0 }]), [0])
    const before = broker.stats().publishDenied
    anon.send({ cmd: 'publish', topic: 'anon/in', payload: 'hello', qos: 0 })
    anon.send({ cmd: 'publish', topic: 'alice/x', payload: 'no', qos: 0 })
    await ping(anon)
    assert.deepEqual(published(await collect(alice, 300)), ['anon/in hello'])
    assert.equal(broker.stats().publishDenied - before, 1)
  })

  test('[fbroker] pattern lines substitute %c (client id) and %u (user name)', async () => {
    const alice = await login(broker.port, 'alice', 'dev-7')
    assert.deepEqual(
      await subackCodes(alice, [
        { topic: 'clients/dev-7/#', qos: 1 },
        { topic: 'clients/dev-8/#', qos: 1 },
        { topic: 'users/alice/inbox', qos: 1 },
        { topic: 'users/bob/inbox', qos: 1 },
      ]),
      [1, 0x80, 1, 0x80],
    )
    // %c grants write too (readwrite): her own publish comes back; one to another client's tree is dropped.
    await publish1(alice, 'clients/dev-8/cmd', 'not-mine', 1)
    await publish1(alice, 'clients/dev-7/cmd', 'mine', 2)
    const got = published(await collect(alice, 300))
    assert.deepEqual(got, ['clients/dev-7/cmd mine'])
    // The %u pattern grants read only: nobody may publish to users/alice/inbox.
    const bob = await login(broker.port, 'bob')
    const before = broker.stats().publishDenied
    await publish1(bob, 'users/alice/inbox', 'x')
    assert.equal(broker.stats().publishDenied - before, 1)
  })

  test('[fbroker] $SYS/x is not writable by clients, even with "topic readwrite #"', async () => {
    const root = await login(broker.port, 'root')
    assert.deepEqual(await subackCodes(root, [{ topic: '$SYS/#', qos: 1 }]), [1])
    const before = broker.stats().publishDenied
    await publish1(root, '$SYS/x', 'forged', 1)
    await publish1(root, '$SYS/broker/uptime', 'forged', 2)
    assert.equal(broker.stats().publishDenied - before, 2)
    assert.deepEqual(published(await collect(root, 300)), [])
    // The subscription works: the broker itself may publish there.
    await broker.publish('$SYS/x', 'real', { qos: 0 })
    assert.deepEqual(published(await collect(root, 300)), ['$SYS/x real'])
  })

  test(
    '[fbroker] mosquitto_sub sees the ACL refusal of its only subscription in the SUBACK',
    { skip: !onPath('mosquitto_sub') && 'mosquitto_sub is not installed (scripts/install-system-deps.sh)' },
    async () => {
      const r = await run('mosquitto_sub', ['-p', String(broker.port), '-u', 'alice', '-P', 'alice-pw', '-t', 'bob/#', '-q', '1', '-W', '3'])
      assert.match(r.output, /All subscription requests were denied/, r.output)
    },
  )
})

describe('ACL reload and errors', { skip }, () => {
  afterEach(closeAll)

  test('[fbroker] broker.reloadAuth() swaps the ACL without dropping connections; a malformed file keeps the old one', async () => {
    const file = join(dir, 'acl-reload')
    writeFileSync(file, 'user alice\ntopic readwrite alice/#\n')
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, aclFile: file, logger: false })
    try {
      const alice = await login(broker.port, 'alice')
      assert.deepEqual(await subackCodes(alice, [{ topic: 'alice/#', qos: 0 }, { topic: 'news/#', qos: 0 }]), [0, 0x80])

      writeFileSync(file, 'user alice\ntopic readwrite alice/#\ntopic read news/#\n')
      const summary = await broker.reloadAuth()
      assert.equal(summary.aclFile?.rules, 2)
      assert.deepEqual(await subackCodes(alice, [{ topic: 'news/#', qos: 0 }], 2), [0], 'the connected client gets the new ACL')

      writeFileSync(file, 'user alice\ntopic readwrite alice/#\nbogus line\n')
      await assert.rejects(broker.reloadAuth(), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e))
        assert.deepEqual(e.issues[0]!.source, { kind: 'file', path: file, line: 3 })
        assert.equal(e.issues[0]!.key, 'acl_file')
        assert.match(e.message, /unknown keyword `bogus`/)
        return true
      })
      // Still the second file: news/# is granted, other/# is not, and alice is still connected.
      assert.deepEqual(await subackCodes(alice, [{ topic: 'news/#', qos: 0 }, { topic: 'other/#', qos: 0 }], 3), [0, 0x80])
      assert.equal(broker.stats().connections, 1)
    } finally {
      await broker.close()
    }
  })

  test('[fbroker] a malformed ACL file stops Broker.start with a ConfigError naming acl_file, the file and the line', async () => {
    const bad = join(dir, 'acl-bad')
    writeFileSync(bad, 'user alice\ntopic readwrite alice/#\ntopic maybe a/b\n')
    const log = captureLogger()
    await assert.rejects(Broker.start({ host: '127.0.0.1', port: 0, aclFile: bad, logger: log.logger }), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e))
      assert.match(e.message, new RegExp(`^config error in ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: key "acl_file": unknown access type \`maybe\``))
      return true
    })
  })

  test('[fbroker] a placeholder in a topic line is accepted with a warning naming the line', async () => {
    const file = join(dir, 'acl-warn')
    writeFileSync(file, 'user alice\ntopic read x/%c\n')
    const log = captureLogger()
    const broker = await Broker.start({ host: '127.0.0.1', port: 0, aclFile: file, logger: log.logger })
    await broker.close()
    await waitUntil(() => log.messages().some((m) => /ACL file line 2: `topic` rules do not substitute/.test(m)), 500)
    assert.ok(log.messages().some((m) => /^ACL file line 2: `topic` rules do not substitute %c or %u/.test(m)), log.messages().join('\n'))
  })
})

describe('ACL: wills and reloads', { skip }, () => {
  afterEach(closeAll)

  test(
    '[fbroker] a will on a topic the ACL does not let its client publish to is not published',
    async () => {
      const broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, aclFile, logger: false })
      try {
        const root = await login(broker.port, 'root')
        assert.deepEqual(await subackCodes(root, [{ topic: '#', qos: 0 }, { topic: '$SYS/#', qos: 0 }]), [0, 0])
        for (const topic of ['bob/forged', '$SYS/forged']) {
          const alice = await RawClient.connect(broker.port)
          // Either outcome is acceptable: the CONNECT is refused, or the will is never published.
          await alice.handshake({
            clientId: uid('will'),
            username: 'alice',
            password: Buffer.from('alice-pw'),
            will: { topic, payload: Buffer.from('will'), qos: 0, retain: false },
          })
          alice.destroy() // no DISCONNECT: the will is due
        }
        assert.deepEqual(published(await collect(root, 400)), [])
      } finally {
        await broker.close()
      }
    },
  )

  test(
    '[fbroker] after reloadAuth() narrows the read rules, an existing subscription stops delivering what the new ACL does not allow',
    async () => {
      const file = join(dir, 'acl-narrow')
      writeFileSync(file, 'user reader\ntopic read #\nuser root\ntopic readwrite #\n')
      const broker = await Broker.start({ host: '127.0.0.1', port: 0, passwordFile, aclFile: file, logger: false })
      try {
        const reader = await login(broker.port, 'reader')
        assert.deepEqual(await subackCodes(reader, [{ topic: '#', qos: 0 }]), [0])
        const root = await login(broker.port, 'root')
        writeFileSync(file, 'user reader\ntopic read news/#\nuser root\ntopic readwrite #\n')
        await broker.reloadAuth()
        await ping(reader) // even after its next packet
        root.send({ cmd: 'publish', topic: 'secret/x', payload: 'no longer readable', qos: 0 })
        root.send({ cmd: 'publish', topic: 'news/x', payload: 'still readable', qos: 0 })
        await ping(root)
        assert.deepEqual(published(await collect(reader, 300)), ['news/x still readable'])
      } finally {
        await broker.close()
      }
    },
  )
})

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}
