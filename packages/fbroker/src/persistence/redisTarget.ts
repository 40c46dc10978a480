/**
 * Which Redis the `persistence: redis` settings name: one server
 * (`redis_url`), a Sentinel-monitored master (`redis_sentinels`) or a
 * Cluster (`redis_cluster_nodes`), as `RedisPersistence` options.
 */
import { parseAddress } from '../config/schema'
import type { RedisPersistenceOptions } from './redis'

export interface RedisTargetSettings {
  redisUrl: string | undefined
  redisSentinels: readonly string[]
  redisSentinelName: string
  redisClusterNodes: readonly string[]
}

/** A setting that makes the target ambiguous or incomplete: the key to name and what is wrong. */
export interface RedisTargetProblem {
  key: 'redis_url' | 'redis_sentinels' | 'redis_cluster_nodes'
  problem: string
}

/** What is wrong with the settings for `persistence: redis`, if anything. */
export function redisTargetProblem(s: RedisTargetSettings): RedisTargetProblem | undefined {
  if (s.redisSentinels.length > 0 && s.redisClusterNodes.length > 0) {
    return { key: 'redis_cluster_nodes', problem: 'cannot be combined with redis_sentinels: a store is either a Sentinel-monitored master or a Cluster' }
  }
  if (s.redisUrl === undefined && s.redisSentinels.length === 0 && s.redisClusterNodes.length === 0) {
    return { key: 'redis_url', problem: 'required when persistence is redis (or set redis_sentinels or redis_cluster_nodes)' }
  }
  return undefined
}

function addresses(list: readonly string[]): Array<{ host: string; port: number }> {
  return list.map((text) => {
    const address = parseAddress(text)
    if (address === undefined) throw new RangeError(`not a host:port address: ${JSON.stringify(text)}`)
    return address
  })
}

/**
 * The `RedisPersistence` options for the settings (check `redisTargetProblem`
 * first). With Sentinel or Cluster the URL still gives the credentials, the
 * database (Sentinel only: a Cluster has just 0) and TLS (`rediss:`).
 */
export function redisTargetOptions(s: RedisTargetSettings): RedisPersistenceOptions {
  if (s.redisSentinels.length === 0 && s.redisClusterNodes.length === 0) return s.redisUrl === undefined ? {} : { url: s.redisUrl }
  const common: Record<string, unknown> = {}
  let db: number | undefined
  if (s.redisUrl !== undefined) {
    const url = new URL(s.redisUrl)
    if (url.username !== '') common.username = decodeURIComponent(url.username)
    if (url.password !== '') common.password = decodeURIComponent(url.password)
    if (url.protocol === 'rediss:') common.tls = {}
    const path = url.pathname.replace(/^\//, '')
    if (path !== '') db = Number(path)
  }
  if (s.redisSentinels.length > 0) {
    return {
      sentinels: addresses(s.redisSentinels),
      sentinelName: s.redisSentinelName,
      ...(db === undefined ? {} : { db }),
      redisOptions: common,
    }
  }
  return { cluster: { nodes: addresses(s.redisClusterNodes) }, redisOptions: common }
}
