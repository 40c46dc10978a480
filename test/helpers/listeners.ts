// MQTT.js clients for each listener type, and a message inbox to wait on,
// for the listener tests.
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { CertSet } from './tls'

export type ListenerProtocol = 'tcp' | 'tls' | 'ws' | 'wss'

/** The URL MQTT.js connects to for a listener (WebSocket path /mqtt unless given). */
export function urlFor(protocol: ListenerProtocol, port: number, path = '/mqtt', host = '127.0.0.1'): string {
  switch (protocol) {
    case 'tcp':
      return `mqtt://${host}:${port}`
    case 'tls':
      return `mqtts://${host}:${port}`
    case 'ws':
      return `ws://${host}:${port}${path}`
    case 'wss':
      return `wss://${host}:${port}${path}`
  }
}

/** MQTT.js 3.1.1 options for a listener: the CA (and client certificate, when asked) for tls and wss. */
export function optionsFor(protocol: ListenerProtocol, certs?: CertSet, opts: { clientCert?: boolean } = {}): IClientOptions {
  const base: IClientOptions = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 }
  if (protocol === 'tls' || protocol === 'wss') {
    assert.ok(certs, `a ${protocol} client needs the test CA`)
    const files = certs.read()
    base.ca = files.ca
    base.rejectUnauthorized = true
    if (opts.clientCert) {
      base.cert = files.clientCert
      base.key = files.clientKey
    }
  }
  return base
}

/** Connects MQTT.js over `protocol`; ended when the test ends. */
export async function connectVia(
  t: TestContext,
  protocol: ListenerProtocol,
  port: number,
  certs?: CertSet,
  extra: IClientOptions & { path?: string; clientCert?: boolean } = {},
): Promise<MqttClient> {
  const { path, clientCert, ...rest } = extra
  const client = await mqtt.connectAsync(urlFor(protocol, port, path), { ...optionsFor(protocol, certs, { clientCert }), ...rest })
  t.after(() => client.endAsync(true))
  return client
}

export interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
}

/** The first messages of `got`, payloads cut short, for failure messages. */
function summary(got: Received[]): string {
  const shown = got.slice(0, 10).map((m) => `${m.topic} ${m.payload.length > 40 ? `${m.payload.slice(0, 40)}… (${m.payload.length} chars)` : m.payload}`)
  return JSON.stringify(shown) + (got.length > 10 ? ` and ${got.length - 10} more` : '')
}

/** Everything `client` receives, with a wait for a count or a topic. */
export function inbox(client: MqttClient) {
  const got: Received[] = []
  const waiters = new Set<() => void>()
  client.on('message', (topic, payload, packet) => {
    got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
    for (const w of [...waiters]) w()
  })
  const until = (what: string, done: () => boolean, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!done()) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; received ${got.length}: ${summary(got)}`))
      }, ms)
      waiters.add(check)
      check()
    })
  return {
    got,
    /** Waits until `n` messages have arrived in all. */
    count: (n: number, ms = 3000) => until(`${n} message(s)`, () => got.length >= n, ms),
    /** Waits for a message on `topic` and returns it. */
    async topic(topic: string, ms = 3000): Promise<Received> {
      await until(`a message on ${topic}`, () => got.some((m) => m.topic === topic), ms)
      return got.find((m) => m.topic === topic)!
    },
  }
}
