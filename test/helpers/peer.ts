// Peer: an MQTT 3.1.1 test client over RawClient that runs the broker's QoS
// 1/2 flows itself, so that a test only looks at what was delivered. Peers
// are registered with `track` (./clients): call `closeAll` after each test.
import assert from 'node:assert/strict'
import { RawClient, type RawPacket } from './raw'
import { track, uid } from './clients'

/**
 * An MQTT 3.1.1 client over RawClient. It answers the broker's QoS 1/2 PUBLISH
 * flows itself, keeps every received PUBLISH in `inbox` and every other packet
 * for `response()`.
 */
export class Peer {
  readonly inbox: RawPacket[] = []
  private others: RawPacket[] = []
  private waiters: Array<() => void> = []
  private lastId = 0
  closed = false
  private constructor(readonly raw: RawClient) {}

  /** Connects (clean session, random client id unless `connect` says otherwise) and asserts CONNACK 0. */
  static async open(port: number, connect: Partial<RawPacket> = {}): Promise<Peer> {
    const raw = await RawClient.connect(port)
    const peer = new Peer(raw)
    track(peer)
    const ack = await raw.handshake({ clientId: 'p-' + uid(), ...connect })
    assert.equal(ack.returnCode, 0, 'CONNACK return code')
    void peer.pump()
    return peer
  }

  private async pump() {
    for (;;) {
      let p: RawPacket | null
      try {
        p = await this.raw.next(1000)
      } catch {
        continue
      }
      if (!p) break
      if (p.cmd === 'publish') {
        if (p.qos === 1) this.raw.send({ cmd: 'puback', messageId: p.messageId })
        if (p.qos === 2) this.raw.send({ cmd: 'pubrec', messageId: p.messageId })
        this.inbox.push(p)
      } else if (p.cmd === 'pubrel') {
        this.raw.send({ cmd: 'pubcomp', messageId: p.messageId })
      } else {
        this.others.push(p)
      }
      for (const w of this.waiters.splice(0)) w()
    }
    this.closed = true
    for (const w of this.waiters.splice(0)) w()
  }

  private async until<T>(what: string, get: () => T | undefined, ms: number): Promise<T> {
    const deadline = Date.now() + ms
    for (;;) {
      const v = get()
      if (v !== undefined) return v
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  nextId(): number {
    this.lastId = (this.lastId % 0xffff) + 1
    return this.lastId
  }

  /** The next non-PUBLISH packet of type `cmd` (and packet id `id`, if given). */
  response(cmd: string, id?: number, ms = 2000): Promise<RawPacket> {
    return this.until(
      id === undefined ? cmd : `${cmd} ${id}`,
      () => {
        const i = this.others.findIndex((p) => p.cmd === cmd && (id === undefined || p.messageId === id))
        return i < 0 ? undefined : this.others.splice(i, 1)[0]
      },
      ms,
    )
  }

  /** Subscribes and returns the SUBACK return codes. */
  async subscribe(subs: Array<[string, number]>): Promise<number[]> {
    const messageId = this.nextId()
    this.raw.send({ cmd: 'subscribe', messageId, subscriptions: subs.map(([topic, qos]) => ({ topic, qos })) })
    return (await this.response('suback', messageId)).granted
  }

  async unsubscribe(filters: string[]): Promise<void> {
    const messageId = this.nextId()
    this.raw.send({ cmd: 'unsubscribe', messageId, unsubscriptions: filters })
    await this.response('unsuback', messageId)
  }

  /** Publishes and waits for the QoS 1/2 flow to finish. */
  async publish(topic: string, payload: string | Buffer = '', opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}) {
    const qos = opts.qos ?? 0
    const messageId = qos > 0 ? this.nextId() : undefined
    this.raw.send({ cmd: 'publish', topic, payload, qos, retain: !!opts.retain, dup: false, messageId })
    if (qos === 1) await this.response('puback', messageId)
    if (qos === 2) {
      await this.response('pubrec', messageId)
      this.raw.send({ cmd: 'pubrel', messageId })
      await this.response('pubcomp', messageId)
    }
  }

  /** Waits for `n` PUBLISH packets and removes them from the inbox. */
  async take(n: number, ms = 2000): Promise<RawPacket[]> {
    await this.until(`${n} PUBLISH packet(s) (have ${this.inbox.length})`, () => (this.inbox.length >= n ? true : undefined), ms)
    return this.inbox.splice(0, n)
  }

  /** Waits for a PUBLISH on `topic`; returns (and removes) everything received before it. */
  async drainUntil(topic: string, ms = 2000): Promise<RawPacket[]> {
    const i = await this.until(
      `PUBLISH on ${topic}`,
      () => {
        const k = this.inbox.findIndex((p) => p.topic === topic)
        return k < 0 ? undefined : k
      },
      ms,
    )
    const before = this.inbox.splice(0, i + 1)
    before.pop()
    return before
  }

  async ping(): Promise<void> {
    this.raw.send({ cmd: 'pingreq' })
    await this.response('pingresp')
  }

  destroy(): void {
    this.raw.destroy()
  }
}
