// A raw MQTT connection for tests that send what a well-behaved client
// never would: packets are written as objects (encoded by mqtt-packet) or as
// literal bytes, and every packet the broker sends back is queued for
// `next()`.
import { connect as netConnect, type Socket } from 'node:net'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mqttPacket = require('mqtt-packet')

export interface RawPacket {
  cmd: string
  [key: string]: any
}

export class RawClient {
  readonly socket: Socket
  private parser: any
  private queue: RawPacket[] = []
  private waiters: Array<(p: RawPacket | null) => void> = []
  private ended = false
  readonly closed: Promise<void>

  private constructor(socket: Socket, protocolVersion: number) {
    this.socket = socket
    this.parser = mqttPacket.parser({ protocolVersion })
    this.parser.on('packet', (p: RawPacket) => this.push(p))
    this.parser.on('error', () => this.socket.destroy())
    socket.on('data', (d) => this.parser.parse(d))
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true
        for (const w of this.waiters.splice(0)) w(null)
        resolve()
      })
    })
    socket.on('error', () => {})
  }

  static async connect(port: number, opts: { protocolVersion?: number; host?: string } = {}): Promise<RawClient> {
    const socket = netConnect(port, opts.host ?? '127.0.0.1')
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    return new RawClient(socket, opts.protocolVersion ?? 4)
  }

  private push(p: RawPacket) {
    const w = this.waiters.shift()
    if (w) w(p)
    else this.queue.push(p)
  }

  /** Encodes and writes a packet object (mqtt-packet's format). */
  send(packet: RawPacket, protocolVersion = 4): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion }))
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** The next packet from the broker; null if the connection closed first; rejects after `timeoutMs`. */
  next(timeoutMs = 2000): Promise<RawPacket | null> {
    const queued = this.queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.ended) return Promise.resolve(null)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(done)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(new Error(`no packet within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (p: RawPacket | null) => {
        clearTimeout(t)
        resolve(p)
      }
      this.waiters.push(done)
    })
  }

  /** Resolves true if the broker closes the connection within `timeoutMs`. */
  async closesWithin(timeoutMs = 2000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))
    const r = await Promise.race([this.closed.then(() => true), timeout])
    clearTimeout(timer)
    return r
  }

  /** Performs CONNECT and returns the CONNACK. */
  async handshake(connect: Partial<RawPacket> = {}, protocolVersion = 4): Promise<RawPacket> {
    this.send(
      {
        cmd: 'connect',
        protocolId: protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
        protocolVersion,
        clean: true,
        clientId: 'raw-' + Math.random().toString(16).slice(2, 10),
        keepalive: 0,
        ...connect,
      },
      protocolVersion,
    )
    const p = await this.next()
    if (!p || p.cmd !== 'connack') throw new Error(`expected CONNACK, got ${p ? p.cmd : 'close'}`)
    return p
  }

  destroy(): void {
    this.socket.destroy()
  }
}
