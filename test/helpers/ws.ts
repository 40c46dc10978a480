// A hand-driven WebSocket client for the listener tests: the upgrade request
// is written by hand, frames are built byte by byte (masked or not, any
// opcode, any declared length), and what the server sends back is decoded:
// binary payloads are fed to an MQTT parser, a close frame's status code is
// kept. Over plain TCP or TLS.
import assert from 'node:assert/strict'
import { randomBytes, createHash } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import type { RawPacket } from './raw'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mqttPacket = require('mqtt-packet')

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

export interface UpgradeRequest {
  path?: string
  /** Sec-WebSocket-Protocol values offered; [] sends no such header. Default ['mqtt']. */
  protocols?: string[]
  origin?: string
  /** Replaces the whole request (sent as is). */
  raw?: string
  /** Connect over TLS with these options (host defaults to 127.0.0.1, servername localhost). */
  tls?: ConnectionOptions
  host?: string
}

export interface UpgradeResponse {
  status: number
  /** Header names in lower case. */
  headers: Record<string, string>
  head: string
}

/** Builds a client frame: masked unless `mask: false`; `length` overrides the declared payload length. */
export function frame(opcode: number, payload: Buffer | string = Buffer.alloc(0), opts: { fin?: boolean; mask?: boolean; length?: number; rsv?: number } = {}): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  const fin = opts.fin ?? true
  const masked = opts.mask ?? true
  const len = opts.length ?? data.length
  const parts: Buffer[] = [Buffer.from([(fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode])]
  const m = masked ? 0x80 : 0
  if (len < 126) parts.push(Buffer.from([m | len]))
  else if (len <= 0xffff) {
    const b = Buffer.alloc(3)
    b[0] = m | 126
    b.writeUInt16BE(len, 1)
    parts.push(b)
  } else {
    const b = Buffer.alloc(9)
    b[0] = m | 127
    b.writeBigUInt64BE(BigInt(len), 1)
    parts.push(b)
  }
  if (masked) {
    const key = randomBytes(4)
    parts.push(key, Buffer.from(data.map((byte, i) => byte ^ key[i % 4])))
  } else {
    parts.push(data)
  }
  return Buffer.concat(parts)
}

/** An encoded MQTT 3.1.1 packet (mqtt-packet's object format). */
export function mqttBytes(packet: RawPacket): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: 4 })
}

/** A CONNECT for MQTT 3.1.1 with a clean session. */
export function connectPacket(clientId: string, extra: Partial<RawPacket> = {}): RawPacket {
  return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0, ...extra }
}

function requestText(port: number, req: UpgradeRequest, key: string): string {
  if (req.raw !== undefined) return req.raw
  const lines = [
    `GET ${req.path ?? '/mqtt'} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
  ]
  const protocols = req.protocols ?? ['mqtt']
  if (protocols.length > 0) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(', ')}`)
  if (req.origin !== undefined) lines.push(`Origin: ${req.origin}`)
  return lines.join('\r\n') + '\r\n\r\n'
}

function parseHead(head: string): UpgradeResponse {
  const [statusLine, ...rest] = head.split('\r\n')
  const m = /^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')
  const headers: Record<string, string> = {}
  for (const line of rest) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return { status: m ? Number(m[1]) : 0, headers, head }
}

async function openSocket(port: number, req: UpgradeRequest): Promise<Socket> {
  const host = req.host ?? '127.0.0.1'
  if (req.tls) {
    const s = tlsConnect({ host, port, servername: 'localhost', ...req.tls })
    await new Promise<void>((resolve, reject) => {
      s.once('secureConnect', () => resolve())
      s.once('error', reject)
    })
    return s
  }
  const s = netConnect(port, host)
  s.setNoDelay(true)
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve())
    s.once('error', reject)
  })
  return s
}

/** A WebSocket connection driven frame by frame. */
export class RawWs {
  readonly socket: Socket
  readonly response: UpgradeResponse
  /** Status code of the server's close frame, once one arrived (null: a close frame without a code). */
  closeCode: number | null | undefined = undefined
  /** Opcodes of every server frame, in order. */
  readonly opcodes: number[] = []
  private buf = Buffer.alloc(0)
  private parser: any
  private queue: RawPacket[] = []
  private waiters: Array<(p: RawPacket | null) => void> = []
  private ended = false
  /** Resolves when the TCP connection is closed. */
  readonly closed: Promise<void>

  private constructor(socket: Socket, response: UpgradeResponse, rest: Buffer) {
    this.socket = socket
    this.response = response
    this.parser = mqttPacket.parser({ protocolVersion: 4 })
    this.parser.on('packet', (p: RawPacket) => {
      const w = this.waiters.shift()
      if (w) w(p)
      else this.queue.push(p)
    })
    this.parser.on('error', () => this.socket.destroy())
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true
        for (const w of this.waiters.splice(0)) w(null)
        resolve()
      })
    })
    socket.on('error', () => {})
    socket.on('data', (d: Buffer) => this.onData(d))
    if (rest.length > 0) this.onData(rest)
  }

  /**
   * Sends the upgrade request and reads the response head. Resolves with the
   * response; `ws` is the open connection when the status is 101, otherwise
   * the socket is left to the server to close (`closed` tells when).
   */
  static async upgrade(port: number, req: UpgradeRequest = {}): Promise<{ response: UpgradeResponse; ws: RawWs; key: string }> {
    const socket = await openSocket(port, req)
    socket.on('error', () => {})
    const key = randomBytes(16).toString('base64')
    socket.write(requestText(port, req, key))
    const { head, rest } = await new Promise<{ head: string; rest: Buffer }>((resolve, reject) => {
      let acc = Buffer.alloc(0)
      const timer = setTimeout(() => fail(new Error(`no upgrade response within 3000 ms; got ${JSON.stringify(acc.toString('latin1'))}`)), 3000)
      const onData = (d: Buffer) => {
        acc = Buffer.concat([acc, d])
        const end = acc.indexOf('\r\n\r\n')
        if (end < 0) return
        cleanup()
        resolve({ head: acc.subarray(0, end).toString('latin1'), rest: acc.subarray(end + 4) })
      }
      const onClose = () => fail(new Error(`connection closed before an upgrade response; got ${JSON.stringify(acc.toString('latin1'))}`))
      const fail = (e: Error) => {
        cleanup()
        reject(e)
      }
      const cleanup = () => {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('close', onClose)
      }
      socket.on('data', onData)
      socket.on('close', onClose)
    })
    const response = parseHead(head)
    return { response, ws: new RawWs(socket, response, rest), key }
  }

  /** Upgrades (101 asserted, with Sec-WebSocket-Protocol: mqtt unless `protocols` says otherwise). */
  static async open(port: number, req: UpgradeRequest = {}): Promise<RawWs> {
    const { response, ws, key } = await RawWs.upgrade(port, req)
    assert.equal(response.status, 101, `upgrade refused: ${response.head}`)
    const expected = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
    assert.equal(response.headers['sec-websocket-accept'], expected, 'Sec-WebSocket-Accept')
    return ws
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d])
    for (;;) {
      if (this.buf.length < 2) return
      const b0 = this.buf[0]!
      const b1 = this.buf[1]!
      let len = b1 & 0x7f
      let at = 2
      if (len === 126) {
        if (this.buf.length < 4) return
        len = this.buf.readUInt16BE(2)
        at = 4
      } else if (len === 127) {
        if (this.buf.length < 10) return
        len = Number(this.buf.readBigUInt64BE(2))
        at = 10
      }
      if (b1 & 0x80) at += 4 // a server must not mask (see maskedFromServer); skip the key to stay in sync
      if (this.buf.length < at + len) return
      const payload = this.buf.subarray(at, at + len)
      this.buf = this.buf.subarray(at + len)
      const opcode = b0 & 0x0f
      this.opcodes.push(opcode)
      if (b1 & 0x80) this.maskedFromServer = true
      if (opcode === OP.binary || opcode === OP.continuation) this.parser.parse(Buffer.from(payload))
      else if (opcode === OP.close) this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : null
      else if (opcode === OP.ping) this.sendFrame(OP.pong, Buffer.from(payload))
      else if (opcode === OP.pong) this.pongs.push(Buffer.from(payload))
    }
  }

  /** Set when a server frame was masked (RFC 6455 forbids it). */
  maskedFromServer = false
  /** Payloads of the pongs received. */
  readonly pongs: Buffer[] = []

  sendFrame(opcode: number, payload: Buffer | string = Buffer.alloc(0), opts: { fin?: boolean; mask?: boolean; length?: number; rsv?: number } = {}): void {
    if (!this.socket.destroyed) this.socket.write(frame(opcode, payload, opts))
  }

  sendBytes(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes)
  }

  /** An MQTT packet in one binary frame. */
  send(packet: RawPacket): void {
    this.sendFrame(OP.binary, mqttBytes(packet))
  }

  /** The next MQTT packet from the server; null if the connection closed first; rejects after `timeoutMs`. */
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

  /** The next packet, which must be `cmd`. */
  async expect(cmd: string, timeoutMs = 2000): Promise<RawPacket> {
    const p = await this.next(timeoutMs)
    assert.ok(p, `connection closed while waiting for ${cmd}`)
    assert.equal(p.cmd, cmd, `expected ${cmd}, got ${p.cmd}`)
    return p
  }

  /** Sends CONNECT and asserts CONNACK 0. */
  async handshake(clientId: string, extra: Partial<RawPacket> = {}): Promise<RawPacket> {
    this.send(connectPacket(clientId, extra))
    const ack = await this.expect('connack')
    assert.equal(ack.returnCode, 0, 'CONNACK return code')
    return ack
  }

  /** Resolves true if the server closes the TCP connection within `timeoutMs`. */
  async closesWithin(timeoutMs = 2000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))
    const r = await Promise.race([this.closed.then(() => true), timeout])
    clearTimeout(timer)
    return r
  }

  destroy(): void {
    this.socket.destroy()
  }
}
