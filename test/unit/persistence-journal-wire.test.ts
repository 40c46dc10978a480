// The wire form of journal batches (binding → JS): every op kind decodes to
// the backend op it stands for, and a malformed buffer is refused with an
// error that says where, never misread.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { toPersistOps } from '../../packages/fbroker/src/persistence/bridge'
import { decodeJournalBatch, JournalWireError, NO_MESSAGE, WireOp } from '../../packages/fbroker/src/persistence/journalWire'

/** Builds a wire batch the way crates/fbroker-node/src/journal_wire.rs does. */
class Writer {
  parts: Buffer[] = []
  u8(n: number) {
    this.parts.push(Buffer.from([n]))
    return this
  }
  u16(n: number) {
    const b = Buffer.alloc(2)
    b.writeUInt16LE(n)
    this.parts.push(b)
    return this
  }
  u32(n: number) {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(n)
    this.parts.push(b)
    return this
  }
  f64(n: number) {
    const b = Buffer.alloc(8)
    b.writeDoubleLE(n)
    this.parts.push(b)
    return this
  }
  bytes(b: Buffer | string) {
    const buf = Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8')
    this.u32(buf.length)
    this.parts.push(buf)
    return this
  }
  done() {
    return Buffer.concat(this.parts)
  }
}

const BINARY = Buffer.from([0, 1, 0xff, 0xfe, 0xc3, 0x28])

function everyKind(): Buffer {
  const w = new Writer().u8(1)
  w.u32(2).bytes('c1').bytes('clïent-2')
  w.u32(2)
  w.bytes('1784463203123456789').bytes('t/ü/1').u8(2).u8(0).bytes(BINARY)
  w.bytes('1784463203123456790').bytes('r/1').u8(1).u8(1).bytes('kept')
  w.u32(13)
  w.u8(WireOp.SessionSave).u32(0).u8(1).u8(0).u8(1).bytes('will/c1').u8(1).u8(1).bytes('bye')
  w.u8(WireOp.SessionSave).u32(1).u8(0).u8(1).f64(30).u8(0)
  w.u8(WireOp.SubAdd).u32(0).bytes('a/+/#').u8(2)
  w.u8(WireOp.SubRemove).u32(0).bytes('a/+/#')
  w.u8(WireOp.QueuePush).u32(1).u32(0).u8(1).u8(1)
  w.u8(WireOp.QueueRemove).u32(1).u32(0)
  w.u8(WireOp.InflightSet).u32(1).u16(65535).u8(1).u32(0).u8(2).u8(0)
  w.u8(WireOp.InflightSet).u32(1).u16(65535).u8(2).u32(NO_MESSAGE).u8(2).u8(0)
  w.u8(WireOp.InflightClear).u32(1).u16(65535)
  w.u8(WireOp.IncomingAdd).u32(0).u16(7)
  w.u8(WireOp.IncomingRemove).u32(0).u16(7)
  w.u8(WireOp.RetainedSet).u32(1)
  w.u8(WireOp.RetainedDelete).bytes('r/2')
  return w.done()
}

describe('journal batch wire form', () => {
  test('every op kind becomes its backend op; messages shared by ops are one object; ids keep all 64 bits', () => {
    const ops = toPersistOps({ seq: 1, data: everyKind() }, { nodeId: 'node-a', now: 1_000_000 })
    const m0 = { id: '1784463203123456789', topic: 't/ü/1', payload: BINARY, qos: 2, retain: false }
    const m1 = { id: '1784463203123456790', topic: 'r/1', payload: Buffer.from('kept'), qos: 1, retain: true }
    assert.deepEqual(ops, [
      {
        op: 'session.save',
        clientId: 'c1',
        session: { clean: false, connected: true, expiresAt: null, lastSeen: 1_000_000, node: 'node-a', epoch: 0, will: { topic: 'will/c1', payload: Buffer.from('bye'), qos: 1, retain: true } },
      },
      {
        op: 'session.save',
        clientId: 'clïent-2',
        session: { clean: false, connected: false, expiresAt: 1_030_000, lastSeen: 1_000_000, node: 'node-a', epoch: 0, will: null },
      },
      { op: 'sub.add', clientId: 'c1', filter: 'a/+/#', qos: 2 },
      { op: 'sub.remove', clientId: 'c1', filter: 'a/+/#' },
      { op: 'queue.push', clientId: 'clïent-2', message: m0, qos: 1, retain: true },
      { op: 'queue.remove', clientId: 'clïent-2', count: 1 },
      { op: 'inflight.set', clientId: 'clïent-2', packetId: 65535, stage: 'pubrec', retain: false, message: m0 },
      { op: 'inflight.set', clientId: 'clïent-2', packetId: 65535, stage: 'pubcomp', retain: false },
      { op: 'inflight.clear', clientId: 'clïent-2', packetId: 65535 },
      { op: 'incoming.add', clientId: 'c1', packetId: 7 },
      { op: 'incoming.remove', clientId: 'c1', packetId: 7 },
      { op: 'retained.set', topic: 'r/1', message: m1 },
      { op: 'retained.delete', topic: 'r/2' },
    ])
    const push = ops[4] as { message: object }
    const inflight = ops[6] as { message: object }
    assert.equal(push.message, inflight.message, 'one message object for both ops')
  })

  test('payloads are copies, not views of the batch buffer', () => {
    const data = everyKind()
    const { messages } = decodeJournalBatch(data)
    // (Both may sit in Node's shared buffer pool, so compare contents, not ArrayBuffers.)
    data.fill(0)
    assert.deepEqual(messages[0]!.payload, BINARY)
  })

  test('a malformed batch is refused with JournalWireError: truncated, trailing bytes, wrong version, unknown op, index out of range', () => {
    const good = everyKind()
    for (const cut of [0, 1, 5, 20, good.length - 1]) {
      assert.throws(() => decodeJournalBatch(good.subarray(0, cut)), JournalWireError, `cut at ${cut}`)
    }
    assert.throws(() => decodeJournalBatch(Buffer.concat([good, Buffer.from([0])])), /1 bytes after the last op/)
    const v2 = Buffer.from(good)
    v2[0] = 2
    assert.throws(() => decodeJournalBatch(v2), /version 2, expected 1/)
    const noClients = new Writer().u8(1).u32(0).u32(0).u32(1)
    assert.throws(() => decodeJournalBatch(noClients.u8(WireOp.SessionDelete).u32(0).done()), /client 0 of 0/)
    assert.throws(() => decodeJournalBatch(new Writer().u8(1).u32(0).u32(0).u32(1).u8(99).done()), /unknown op kind 99/)
    const badMessage = new Writer().u8(1).u32(1).bytes('c').u32(0).u32(1).u8(WireOp.QueuePush).u32(0).u32(3).u8(1).u8(0).done()
    assert.throws(() => decodeJournalBatch(badMessage), /message 3 of 0/)
    const badStage = new Writer().u8(1).u32(1).bytes('c').u32(0).u32(1).u8(WireOp.InflightSet).u32(0).u16(1).u8(3).u32(NO_MESSAGE).u8(1).u8(0).done()
    assert.throws(() => toPersistOps({ seq: 1, data: badStage }, { nodeId: 'n', now: 0 }), /stage 3/)
  })
})
