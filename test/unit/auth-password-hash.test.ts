// Password hashes: our $7$ format against mosquitto_passwd's output, the
// legacy formats, and malformed strings.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, describe, test } from 'node:test'
import { DEFAULT_PBKDF2_ITERATIONS, hashPassword, isPasswordHash, parsePasswordFile, parsePasswordHash, verifyPassword } from 'fbroker'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-hash-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const hasMosquittoPasswd = spawnSync('mosquitto_passwd', ['-h'], { encoding: 'utf8' }).error === undefined
const noMosquittoPasswd = hasMosquittoPasswd
  ? false
  : 'mosquitto_passwd is not installed (Debian package "mosquitto"; scripts/install-system-deps.sh installs it)'

/** Runs `mosquitto_passwd [hashArgs] -b FILE USER PASSWORD` and returns the file's entry for USER. */
function mosquittoEntry(user: string, password: string, hashArgs: string[] = []): string {
  const file = path.join(dir, `mp-${user}-${hashArgs.join('')}`)
  writeFileSync(file, '')
  const r = spawnSync('mosquitto_passwd', [...hashArgs, '-b', file, user, password], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const hashes = parsePasswordFile(readFileSync(file, 'utf8'), file)
  return hashes.get(user)!
}

describe('password hashes', () => {
  test('hashPassword writes $7$<210000>$<12-byte salt b64>$<64-byte hash b64> and verifies', async () => {
    const hash = await hashPassword('correct horse')
    assert.match(hash, /^\$7\$210000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/)
    const parsed = parsePasswordHash(hash)
    assert.equal(parsed?.kind, 'pbkdf2-sha512')
    assert.equal(DEFAULT_PBKDF2_ITERATIONS, 210_000)
    assert.equal(await verifyPassword('correct horse', hash), true)
    assert.equal(await verifyPassword(Buffer.from('correct horse'), hash), true)
    assert.equal(await verifyPassword('correct horsf', hash), false)
    assert.notEqual(await hashPassword('correct horse'), hash, 'a fresh random salt each time')
  })

  test('a fixed salt and iteration count give the PBKDF2-HMAC-SHA512 vector', async () => {
    // Independent computation: RFC 8018 PBKDF2 with HMAC-SHA512, done by hand for one block.
    const { createHmac } = await import('node:crypto')
    const salt = Buffer.from('000102030405060708090a0b', 'hex')
    const u1 = createHmac('sha512', 'pw').update(Buffer.concat([salt, Buffer.from([0, 0, 0, 1])])).digest()
    const u2 = createHmac('sha512', 'pw').update(u1).digest()
    const expected = Buffer.alloc(64)
    for (let i = 0; i < 64; i++) expected[i] = u1[i]! ^ u2[i]!
    assert.equal(await hashPassword('pw', { salt, iterations: 2 }), `$7$2$${salt.toString('base64')}$${expected.toString('base64')}`)
  })

  test('verifies an entry written by mosquitto_passwd -b (PBKDF2, its default)', { skip: noMosquittoPasswd }, async () => {
    const entry = mosquittoEntry('alice', 'päss wörd')
    assert.match(entry, /^\$7\$\d+\$/)
    assert.equal(await verifyPassword('päss wörd', entry), true)
    assert.equal(await verifyPassword('pass word', entry), false)
  })

  test('verifies a legacy $6$ entry written by mosquitto_passwd -H sha512', { skip: noMosquittoPasswd }, async () => {
    const entry = mosquittoEntry('bob', 's3cret', ['-H', 'sha512'])
    assert.match(entry, /^\$6\$/)
    assert.equal(parsePasswordHash(entry)?.kind, 'sha512')
    assert.equal(await verifyPassword('s3cret', entry), true)
    assert.equal(await verifyPassword('s3creT', entry), false)
  })

  test('verifies a legacy unsalted SHA-256 hex hash (either case)', async () => {
    const hex = createHash('sha256').update('legacy').digest('hex')
    assert.equal(await verifyPassword('legacy', hex), true)
    assert.equal(await verifyPassword('legacy', hex.toUpperCase()), true)
    assert.equal(await verifyPassword('Legacy', hex), false)
  })

  test('malformed hashes are not accepted and verify to false', async () => {
    const good = await hashPassword('x', { iterations: 1000 })
    const [, , iter, salt, hash] = good.split('$')
    const bad = [
      '',
      'plaintext',
      `$7$${iter}$${salt}`,
      `$7$0$${salt}$${hash}`,
      `$7$-5$${salt}$${hash}`,
      `$7$99999999999$${salt}$${hash}`, // iterations beyond the cap
      `$7$${iter}$${salt}$${hash!.slice(0, 40)}`, // hash too short
      `$7$${iter}$not*base64$${hash}`,
      `$7$${iter}$$${hash}`,
      `$5$${salt}$${hash}`,
      'ab'.repeat(31),
    ]
    for (const stored of bad) {
      assert.equal(isPasswordHash(stored), false, stored)
      assert.equal(await verifyPassword('x', stored), false, stored)
    }
    assert.equal(isPasswordHash(good), true)
    await assert.rejects(hashPassword('x', { iterations: 0 }), /iterations must be an integer between 1 and/)
  })
})
