// A throwaway redis-server for tests, started and stopped by
// scripts/redis.sh (the same script CI relies on to install it).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot } from './auth'

/**
 * Runs `scripts/redis.sh ACTION PORT DIR`; fails the test when it fails.
 * `durable`: append-only with fsync always (REDIS_DURABLE=1), so a restart
 * on the same DIR keeps every acknowledged write.
 */
export function redisScript(action: 'start' | 'stop', port: number, dir: string, opts: { durable?: boolean } = {}): void {
  const r = spawnSync('bash', [join(repoRoot, 'scripts', 'redis.sh'), action, String(port), dir], {
    encoding: 'utf8',
    timeout: 30_000,
    env: opts.durable ? { ...process.env, REDIS_DURABLE: '1' } : process.env,
  })
  assert.equal(r.status, 0, `scripts/redis.sh ${action} ${port} failed: ${r.stderr}`)
}
