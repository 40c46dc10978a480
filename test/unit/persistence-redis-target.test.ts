// How the persistence settings name a Redis: one server, Sentinel or Cluster,
// with the URL still giving credentials, database and TLS.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { redisTargetOptions, redisTargetProblem } from '../../packages/fbroker/src/persistence/redisTarget'

const base = { redisUrl: undefined, redisSentinels: [], redisSentinelName: 'mymaster', redisClusterNodes: [] }

describe('the Redis that persistence: redis writes to', () => {
  test('a single server is the URL as given', () => {
    assert.deepEqual(redisTargetOptions({ ...base, redisUrl: 'redis://:pw@h:6380/3' }), { url: 'redis://:pw@h:6380/3' })
  })

  test('Sentinel: the sentinels and master name, with the user, password, database and TLS of the URL', () => {
    assert.deepEqual(
      redisTargetOptions({ ...base, redisUrl: 'rediss://app:p%40ss@ignored:1/4', redisSentinels: ['10.0.0.5:26379', '[::1]:26380'], redisSentinelName: 'prod' }),
      {
        sentinels: [
          { host: '10.0.0.5', port: 26379 },
          { host: '::1', port: 26380 },
        ],
        sentinelName: 'prod',
        db: 4,
        redisOptions: { username: 'app', password: 'p@ss', tls: {} },
      },
    )
    assert.deepEqual(redisTargetOptions({ ...base, redisSentinels: ['s:1'] }), { sentinels: [{ host: 's', port: 1 }], sentinelName: 'mymaster', redisOptions: {} })
  })

  test('Cluster: the seed nodes, with the password of the URL', () => {
    assert.deepEqual(redisTargetOptions({ ...base, redisUrl: 'redis://:secret@x', redisClusterNodes: ['n1:7000', 'n2:7001'] }), {
      cluster: {
        nodes: [
          { host: 'n1', port: 7000 },
          { host: 'n2', port: 7001 },
        ],
      },
      redisOptions: { password: 'secret' },
    })
  })

  test('problems: nothing named, or both Sentinel and Cluster', () => {
    assert.equal(redisTargetProblem(base)?.key, 'redis_url')
    assert.equal(redisTargetProblem({ ...base, redisSentinels: ['a:1'], redisClusterNodes: ['b:2'] })?.key, 'redis_cluster_nodes')
    assert.equal(redisTargetProblem({ ...base, redisClusterNodes: ['b:2'] }), undefined)
    assert.equal(redisTargetProblem({ ...base, redisUrl: 'redis://h' }), undefined)
  })
})
