// Opening test connections and the short exchanges tests repeat on them
// (subscribe, QoS 1/2 publish, ping, leaving a session).
//
// Connections are closed in one of two ways: `raw(t, ...)` and `mqttClient(t,
// ...)` register their cleanup with the test context; `rawSession`, `rawWith`
// and `Peer.open` (./peer) register the connection with `track`, and the test
// file calls `closeAll` after each test.
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { RawClient, type RawPacket } from './raw'
import { expectPacket } from './expect'

let seq = 0
/** A short id unique within this run: usable as client id (<= 23 chars) and topic level. */
export const uid = (prefix = '') => `${prefix}${(++seq).toString(36)}${Math.random().toString(36).slice(2, 7)}`.slice(0, 23)

// ---- connections closed by closeAll() -------------------------------------------

const opened: Array<{ destroy(): void }> = []

/** Registers `c` to be destroyed by the next `closeAll()`. */
export function track<T extends { destroy(): void }>(c: T): T {
  opened.push(c)
  return c
}

/** Destroys every connection registered with `track` (call it after each test). */
export function closeAll(): void {
  for (const c of opened.splice(0)) c.destroy()
}

/** A raw connection that has sent CONNECT (with `extra` fields, e.g. a will) and got CONNACK 0; closed by `closeAll`. */
export async function rawWith(port: number, extra: Partial<RawPacket>): Promise<RawClient> {
  const raw = track(await RawClient.connect(port))
  const ack = await raw.handshake({ clientId: 'raw-' + uid(), ...extra })
  assert.equal(ack.returnCode, 0)
  return raw
}

/** A raw connection that has sent CONNECT and got CONNACK 0; closed by `closeAll`. */
export const rawSession = (port: number): Promise<RawClient> => rawWith(port, {})

// ---- connections closed when the test ends --------------------------------------

/** Opens a raw connection, closed when the test ends; with `connect` fields, also performs the handshake (rc 0 asserted). */
export async function raw(t: TestContext, port: number, connect?: Partial<RawPacket>): Promise<RawClient> {
  const c = await RawClient.connect(port)
  t.after(() => c.destroy())
  if (connect) {
    const ack = await c.handshake(connect)
    assert.equal(ack.returnCode, 0, `CONNACK return code for ${connect.clientId}`)
  }
  return c
}

/** Connects `clientId` on a fresh raw connection and returns it with its CONNACK (rc 0 asserted). */
export async function connectAs(t: TestContext, port: number, clientId: string, clean: boolean): Promise<{ c: RawClient; ack: RawPacket }> {
  const c = await raw(t, port)
  const ack = await c.handshake({ clientId, clean })
  assert.equal(ack.returnCode, 0)
  return { c, ack }
}

/** Reconnects `clientId` with clean session 0 on a fresh raw connection; asserts the session was resumed. */
export async function resume(t: TestContext, port: number, clientId: string): Promise<RawClient> {
  const c = await raw(t, port)
  const ack = await c.handshake({ clientId, clean: false })
  assert.equal(ack.returnCode, 0)
  assert.equal(ack.sessionPresent, true, `session of ${clientId} not present`)
  return c
}

/** An MQTT.js 3.1.1 client, ended when the test ends. */
export async function mqttClient(t: TestContext, url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...opts })
  t.after(() => c.endAsync(true))
  return c
}

// ---- exchanges on a raw connection ----------------------------------------------

/** Subscribes on a raw connection and waits for the SUBACK, which must grant `qos`. */
export async function subscribe(c: RawClient, topic: string, qos: 0 | 1 | 2, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
  const ack = await expectPacket(c, 'suback')
  assert.equal(ack.messageId, messageId)
  assert.deepEqual(ack.granted, [qos], `SUBACK for ${topic}`)
}

/** Waits until a raw client responds to PINGREQ: everything sent before it has been processed. */
export async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' })
  await expectPacket(c, 'pingresp')
}

/** QoS 1 publish on a raw connection, waiting for the PUBACK. */
export async function publish1(c: RawClient, topic: string, payload: string, messageId = 1, dup = false): Promise<void> {
  c.send({ cmd: 'publish', topic, payload, qos: 1, messageId, dup })
  const ack = await expectPacket(c, 'puback')
  assert.equal(ack.messageId, messageId)
}

/** Complete QoS 2 publish on a raw connection. */
export async function publish2(c: RawClient, topic: string, payload: string, messageId = 1): Promise<void> {
  c.send({ cmd: 'publish', topic, payload, qos: 2, messageId })
  assert.equal((await expectPacket(c, 'pubrec')).messageId, messageId)
  c.send({ cmd: 'pubrel', messageId })
  assert.equal((await expectPacket(c, 'pubcomp')).messageId, messageId)
}

/** Acknowledges every QoS 1/2 PUBLISH in `ps` (PUBACK / PUBREC). */
export function ackAll(c: RawClient, ps: RawPacket[]): void {
  for (const p of ps) {
    if (p.cmd !== 'publish' || !p.qos) continue
    c.send({ cmd: p.qos === 1 ? 'puback' : 'pubrec', messageId: p.messageId })
  }
}

/** Leaves the session: DISCONNECT, then wait until the broker has closed the socket. */
export async function leave(c: RawClient): Promise<void> {
  c.send({ cmd: 'disconnect' })
  await c.closesWithin(1000)
  c.destroy()
}
