// The behaviour every built-in credential source must have (password file,
// static users, Redis). A test file calls `authSourceSuite` with a factory
// that stores the given users in its backend and returns the plugin.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { PluginChain, hashPassword, type AclEntry, type ClientInfo, type Plugin } from 'fbroker'

/** A user as the backend stores it: a password hash (absent: cannot log in) and an optional ACL. */
export interface AuthSourceUser {
  name: string
  hash?: string
  acl?: AclEntry[]
}

export interface AuthSourceFixture {
  plugin: Plugin
  /** Releases the backend (connections, files). */
  close?(): Promise<void>
}

export type AuthSourceFactory = (users: AuthSourceUser[]) => Promise<AuthSourceFixture>

export interface AuthSourceSuiteOptions {
  /** A reason to skip the whole suite (e.g. the backend is not installed), or false. */
  skip?: string | false
}

function legacySha512(password: string): string {
  const salt = randomBytes(12)
  const hash = createHash('sha512').update(password).update(salt).digest()
  return `$6$${salt.toString('base64')}$${hash.toString('base64')}`
}

function clientOf(username: string | undefined, id = `c-${username ?? 'anon'}`): ClientInfo {
  return { id, username, address: '127.0.0.1:40000', protocolVersion: 4 }
}

function pub(client: ClientInfo, topic: string) {
  return { client, topic, payload: Buffer.from('m'), qos: 1, retain: false }
}

/** The shared test suite for a credential source. */
export function authSourceSuite(label: string, factory: AuthSourceFactory, options: AuthSourceSuiteOptions = {}): void {
  describe(`auth source contract: ${label}`, { skip: options.skip ?? false }, () => {
    let fixture: AuthSourceFixture
    let plugin: Plugin
    let chain: PluginChain

    before(async () => {
      const users: AuthSourceUser[] = [
        {
          name: 'alice',
          hash: await hashPassword('alice-pw', { iterations: 1000 }),
          acl: [
            { access: 'readwrite', topic: 'users/alice/#' },
            { access: 'read', topic: 'public/#' },
            { access: 'deny', topic: 'public/secret/#' },
          ],
        },
        { name: 'bob', hash: await hashPassword('bob pw ü') }, // default iterations, no ACL
        { name: 'carol', hash: legacySha512('carol-pw') },
        { name: 'dave', hash: createHash('sha256').update('dave-pw').digest('hex') },
        { name: 'eve', acl: [{ access: 'read', topic: 'eve/#' }] }, // ACL only: cannot log in here
        // Spaces, "/", wildcards and non-ASCII are fine in user names (":" is not, in a password file).
        { name: 'odd user/é+#', hash: await hashPassword('odd', { iterations: 1000 }) },
      ]
      fixture = await factory(users)
      plugin = fixture.plugin
      chain = new PluginChain([plugin])
    })

    after(async () => {
      await fixture?.close?.()
    })

    test('registers authenticate, authorizeSubscribe and authorizePublish', () => {
      assert.deepEqual(chain.hooks, { authenticate: true, authorizeSubscribe: true, authorizePublish: true })
    })

    test('accepts the right password in every stored format ($7$ at 1000 and 210000 iterations, $6$, SHA-256 hex)', async () => {
      for (const [user, password] of [
        ['alice', 'alice-pw'],
        ['bob', 'bob pw ü'],
        ['carol', 'carol-pw'],
        ['dave', 'dave-pw'],
        ['odd user/é+#', 'odd'],
      ] as const) {
        assert.equal(await plugin.authenticate!(clientOf(user), user, Buffer.from(password)), true, user)
        assert.deepEqual(await chain.authenticate(clientOf(user), user, Buffer.from(password)), {
          outcome: 'allow',
          returnCode: 0,
          cause: 'answer',
          plugin: plugin.name,
        })
      }
    })

    test('refuses a wrong password with CONNACK 4', async () => {
      for (const user of ['alice', 'bob', 'carol', 'dave']) {
        assert.equal(await plugin.authenticate!(clientOf(user), user, Buffer.from('wrong')), false, user)
        const decision = await chain.authenticate(clientOf(user), user, Buffer.from('wrong'))
        assert.deepEqual([decision.outcome, decision.returnCode], ['deny', 4], user)
      }
      assert.equal(await plugin.authenticate!(clientOf('alice'), 'alice', Buffer.from('alice-pw ')), false)
      assert.equal(await plugin.authenticate!(clientOf('alice'), 'alice', Buffer.from('alice-p')), false)
    })

    test('refuses an unknown user, a user without a password hash, and a missing password', async () => {
      assert.equal(await plugin.authenticate!(clientOf('mallory'), 'mallory', Buffer.from('x')), false)
      assert.equal(await plugin.authenticate!(clientOf('eve'), 'eve', Buffer.from('')), false)
      assert.equal(await plugin.authenticate!(clientOf('alice'), 'alice', undefined), false)
    })

    test('gives no answer for a client without a user name (left to allow_anonymous)', async () => {
      assert.equal(await plugin.authenticate!(clientOf(undefined), undefined, undefined), undefined)
      assert.equal((await chain.authenticate(clientOf(undefined), undefined, undefined)).outcome, 'none')
    })

    test('applies the user ACL to subscriptions: covered filters granted, others and overlapping denies refused', async () => {
      const granted = await chain.authorizeSubscribe(clientOf('alice'), [
        { topic: 'users/alice/#', qos: 2 },
        { topic: 'users/alice/+/temp', qos: 1 },
        { topic: 'public/news', qos: 0 },
        { topic: 'public/#', qos: 1 }, // could receive public/secret/...
        { topic: 'public/secret/x', qos: 1 },
        { topic: 'users/bob/#', qos: 1 },
        { topic: '#', qos: 0 },
      ])
      assert.deepEqual(granted, [2, 1, 0, 0x80, 0x80, 0x80, 0x80])
    })

    test('applies the user ACL to publishes: write needs write or readwrite', async () => {
      const alice = clientOf('alice')
      const results = await chain.authorizePublishBatch([
        pub(alice, 'users/alice/x'),
        pub(alice, 'users/alice'),
        pub(alice, 'public/news'), // read only
        pub(alice, 'users/bob/x'),
      ])
      assert.deepEqual(results, [true, true, false, false])
    })

    test('gives no answer for users without an ACL and for anonymous clients (not restricted)', async () => {
      const bob = clientOf('bob')
      assert.equal(await plugin.authorizeSubscribe!(bob, { topic: '#', qos: 1 }), undefined)
      assert.equal(await plugin.authorizePublish!(bob, { topic: 'x', payload: Buffer.alloc(0), qos: 0, retain: false }), undefined)
      assert.equal(await plugin.authorizePublish!(clientOf(undefined), { topic: 'x', payload: Buffer.alloc(0), qos: 0, retain: false }), undefined)
      assert.deepEqual(await chain.authorizeSubscribe(bob, [{ topic: '#', qos: 1 }]), [1])
      assert.deepEqual(await chain.authorizePublishBatch([pub(bob, 'anything'), pub(clientOf('mallory'), 'x')]), [true, true])
    })

    test('applies the ACL of a user another plugin authenticated', async () => {
      const eve = clientOf('eve')
      assert.deepEqual(await chain.authorizeSubscribe(eve, [{ topic: 'eve/inbox', qos: 1 }, { topic: 'other', qos: 1 }]), [1, 0x80])
      assert.deepEqual(await chain.authorizePublishBatch([pub(eve, 'eve/inbox')]), [false])
    })

    test('chains behind another plugin: its definite answers win, its undefined falls through to the source', async () => {
      const front: Plugin = { name: 'front', authenticate: (_c, username) => (username === 'root' ? true : undefined) }
      const both = new PluginChain([front, plugin])
      assert.equal((await both.authenticate(clientOf('root'), 'root', Buffer.from('x'))).plugin, 'front')
      const decision = await both.authenticate(clientOf('alice'), 'alice', Buffer.from('alice-pw'))
      assert.deepEqual([decision.outcome, decision.plugin], ['allow', plugin.name])
    })
  })
}
