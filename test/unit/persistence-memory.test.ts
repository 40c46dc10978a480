// The in-memory persistence backend: the shared contract, plus what is
// specific to it.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { MemoryPersistence, createPersistence } from '../../packages/fbroker/src/persistence'
import { persistenceSuite } from '../backends/persistence.abstract'

persistenceSuite('memory', async ({ queue }) => {
  const backend = new MemoryPersistence(queue === undefined ? {} : { queue })
  await backend.open()
  return {
    backend,
    stateKeys: async () => backend.inspect().items,
    messageBodies: async () => backend.inspect().messages,
    close: () => backend.close(),
  }
})

describe('memory persistence', () => {
  test('is what createPersistence makes by default; refuses work before open()', async () => {
    const backend = createPersistence()
    assert.equal(backend.kind, 'memory')
    assert.deepEqual(backend.health(), { connected: false, status: 'new' })
    await assert.rejects(backend.load(), /not open/)
    await backend.open()
    assert.deepEqual(backend.health(), { connected: true, status: 'open' })
  })

  test('rejects impossible queue limits', () => {
    assert.throws(() => new MemoryPersistence({ queue: { maxMessages: -1 } }), /maxMessages/)
    assert.throws(() => new MemoryPersistence({ queue: { policy: 'drop_random' as 'drop_new' } }), /policy/)
  })

  test('stores copies: changing a submitted payload afterwards does not change what is stored', async () => {
    const backend = new MemoryPersistence()
    await backend.open()
    const payload = Buffer.from('original')
    await backend.apply([
      { op: 'session.save', clientId: 'c', session: { clean: false, connected: true, expiresAt: null, lastSeen: 1, node: 'n', epoch: 0, will: null } },
      { op: 'queue.push', clientId: 'c', message: { id: 'm', topic: 't', payload, qos: 1, retain: false } },
    ])
    payload.write('CHANGED!')
    const { sessions } = await backend.load()
    assert.equal(sessions[0]!.queue[0]!.message.payload.toString(), 'original')
  })
})
