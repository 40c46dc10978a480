// Assertions about what the broker sends (or does not send) on a RawClient,
// and collecting what arrives within a time window.
import assert from 'node:assert/strict'
import type { RawClient, RawPacket } from './raw'
import { describePacket } from './packets'

/** The next packet, which must be `cmd`. */
export async function expectPacket(c: RawClient, cmd: string, ms = 2000): Promise<RawPacket> {
  const p = await c.next(ms)
  assert.ok(p, `connection closed while waiting for ${cmd}`)
  assert.equal(p.cmd, cmd, `expected ${cmd}, got ${p.cmd} ${JSON.stringify(p)}`)
  return p
}

/** The next packet; null if the connection closed first; 'timeout' if neither happened within `ms`. */
async function nextOrTimeout(c: RawClient, ms: number): Promise<RawPacket | null | 'timeout'> {
  try {
    return await c.next(ms)
  } catch {
    return 'timeout'
  }
}

/** Asserts the broker closes the connection within `ms` without sending anything (first); `what` names the connection. */
export async function expectClose(c: RawClient, ms = 2000, what = 'connection'): Promise<void> {
  const p = await nextOrTimeout(c, ms)
  if (p === 'timeout') assert.fail(`${what} still open after ${ms} ms`)
  assert.equal(p, null, `expected ${what} to be closed, got ${p && p.cmd} ${JSON.stringify(p)}`)
}

/** Resolves when `raw` is closed before it sends any packet; fails on a reply or after `ms`; `what` names what was sent. */
export async function expectClosedWithoutReply(raw: RawClient, what: string, ms = 2000): Promise<void> {
  const p = await nextOrTimeout(raw, ms)
  assert.equal(
    p === null ? null : p === 'timeout' ? 'connection still open' : `received ${p.cmd}`,
    null,
    `${what}: expected the broker to close the connection without replying`,
  )
}

/** Every packet received within `ms` (stops early if the connection closes). */
export async function collect(c: RawClient, ms: number): Promise<RawPacket[]> {
  const out: RawPacket[] = []
  const end = Date.now() + ms
  for (;;) {
    const left = end - Date.now()
    if (left <= 0) return out
    const p = await nextOrTimeout(c, left)
    if (p === 'timeout' || !p) return out
    out.push(p)
  }
}

/** Asserts nothing arrives within `ms` (a close is reported as a failure too). */
export async function expectSilence(c: RawClient, ms: number, what = 'packet'): Promise<void> {
  const got = await collect(c, ms)
  assert.deepEqual(got.map(describePacket), [], `expected no ${what} within ${ms} ms`)
  assert.ok(!c.socket.destroyed, 'connection closed unexpectedly')
}
