// The password-file and static credential sources: the shared contract,
// plus parsing, reloading and errors of the file.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, describe, test } from 'node:test'
import {
  PasswordFileError,
  createPasswordFilePlugin,
  createStaticAuthPlugin,
  hashPassword,
  parsePasswordFile,
  type AclEntry,
  type AuthLogger,
  type ClientInfo,
  type StaticUser,
} from 'fbroker'
import { authSourceSuite } from '../backends/auth-source.abstract'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-file-source-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

authSourceSuite('password file', async (users) => {
  const file = path.join(dir, `passwd-${++files}`)
  const lines = ['# written by the test', '']
  const acl: Record<string, AclEntry[]> = {}
  for (const user of users) {
    if (user.hash !== undefined) lines.push(`${user.name}:${user.hash}`)
    if (user.acl !== undefined) acl[user.name] = user.acl
  }
  writeFileSync(file, `${lines.join('\r\n')}\r\n`) // CRLF line endings are accepted too
  return { plugin: createPasswordFilePlugin({ file, acl }) }
})

authSourceSuite('static users', async (users) => {
  const map = new Map<string, StaticUser>()
  for (const user of users) {
    const entry: StaticUser = {}
    if (user.hash !== undefined) entry.password = user.hash
    if (user.acl !== undefined) entry.acl = user.acl
    map.set(user.name, entry)
  }
  return { plugin: createStaticAuthPlugin({ users: map }) }
})

const client = (username: string): ClientInfo => ({ id: `c-${username}`, username, address: '127.0.0.1:1', protocolVersion: 4 })

describe('password file', () => {
  test('parsePasswordFile: comments, blank lines and trailing spaces ignored, the last entry of a user wins', async () => {
    const h1 = await hashPassword('one', { iterations: 1000 })
    const h2 = await hashPassword('two', { iterations: 1000 })
    const users = parsePasswordFile(`# comment\n\n  # indented comment\nann:${h1}\nben:${h1}\nann:${h2}   \n`)
    assert.deepEqual([...users.keys()], ['ann', 'ben'])
    assert.equal(users.get('ann'), h2)
  })

  test('parsePasswordFile names the file and line of a malformed entry', () => {
    const cases: [string, RegExp][] = [
      ['ok:0123456789012345678901234567890123456789012345678901234567890123\nno colon here\n', /^f:2: expected "user:password-hash"$/],
      [':$7$1$AAAA$BBBB\n', /^f:1: expected "user:password-hash"$/],
      ['plain:secret\n', /^f:1: user "plain": the password is not a supported hash .* a plain-text password\? Set it again with `fbroker passwd`$/],
      ['bell\u0007:0123456789012345678901234567890123456789012345678901234567890123\n', /^f:1: invalid user name "bell\\u0007"$/],
    ]
    for (const [text, message] of cases) {
      assert.throws(() => parsePasswordFile(text, 'f'), (err: unknown) => err instanceof PasswordFileError && message.test(err.message))
    }
  })

  test('createPasswordFilePlugin reports a missing or malformed file with its path', () => {
    const missing = path.join(dir, 'nope')
    assert.throws(() => createPasswordFilePlugin({ file: missing }), new RegExp(`^PasswordFileError: ${missing}: cannot read the password file: file not found$`))
    const bad = path.join(dir, 'bad')
    writeFileSync(bad, 'x:y\n')
    assert.throws(() => createPasswordFilePlugin({ file: bad }), (err: unknown) => err instanceof PasswordFileError && err.line === 1 && err.file === bad)
  })

  test('reload() picks up changes; a broken file keeps the previous users', async () => {
    const file = path.join(dir, 'reload')
    writeFileSync(file, `ann:${await hashPassword('old', { iterations: 1000 })}\n`)
    const plugin = createPasswordFilePlugin({ file })
    assert.equal(plugin.file, file)
    assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('old')), true)

    writeFileSync(file, `ann:${await hashPassword('new', { iterations: 1000 })}\nben:${await hashPassword('b', { iterations: 1000 })}\n`)
    assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('new')), false, 'not before reload')
    await plugin.reload()
    assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('new')), true)
    assert.equal(await plugin.authenticate(client('ben'), 'ben', Buffer.from('b')), true)

    writeFileSync(file, 'garbage\n')
    await assert.rejects(plugin.reload(), /reload:1: expected "user:password-hash"/)
    assert.equal(await plugin.authenticate(client('ann'), 'ann', Buffer.from('new')), true, 'previous users kept')
  })

  test('a static user with an invalid hash or ACL is logged and fails closed', async () => {
    const logged: string[] = []
    const logger: AuthLogger = { debug() {}, info() {}, warn() {}, error: (_o, msg) => void logged.push(msg ?? '') }
    const plugin = createStaticAuthPlugin({
      users: { broken: { password: 'not-a-hash', acl: [{ access: 'everything', topic: '#' }] as unknown as AclEntry[] } },
      logger,
    })
    assert.equal(await plugin.authenticate(client('broken'), 'broken', Buffer.from('not-a-hash')), false)
    assert.equal(await plugin.authorizePublish(client('broken'), { topic: 'x', payload: Buffer.alloc(0), qos: 0, retain: false }), false)
    assert.equal(await plugin.authorizeSubscribe(client('broken'), { topic: 'x', qos: 0 }), false)
    assert.equal(logged.length, 2)
    assert.match(logged[0]!, /user "broken" has a password in no supported format/)
    assert.match(logged[1]!, /user "broken": acl\[0\]\.access must be one of .*; every topic refused/)
  })
})
