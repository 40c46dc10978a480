// Per-user ACLs of the built-in credential sources: topic matching, filter
// coverage for subscriptions, deny entries, validation.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AclError, aclAllowsPublish, aclAllowsSubscribe, filterCovers, filtersIntersect, parseAcl, topicMatches, type AclEntry } from 'fbroker'

describe('topic filters', () => {
  test('topicMatches follows the MQTT rules, $-topics included', () => {
    const cases: [string, string, boolean][] = [
      ['a/b', 'a/b', true],
      ['a/+', 'a/b', true],
      ['a/+', 'a', false],
      ['a/+', 'a/b/c', false],
      ['a/#', 'a', true],
      ['a/#', 'a/b/c', true],
      ['#', 'a/b', true],
      ['+/+', '/x', true],
      ['#', '$SYS/x', false],
      ['+/x', '$SYS/x', false],
      ['$SYS/#', '$SYS/x', true],
      ['a/b', 'a/c', false],
    ]
    for (const [filter, topic, expected] of cases) assert.equal(topicMatches(filter, topic), expected, `${filter} ~ ${topic}`)
  })

  test('filterCovers: every topic of the inner filter is matched by the outer one', () => {
    const cases: [string, string, boolean][] = [
      ['users/a/#', 'users/a/+/temp', true],
      ['users/a/#', 'users/a', true],
      ['users/a/#', 'users/a/#', true],
      ['users/+/temp', 'users/a/temp', true],
      ['users/+/temp', 'users/+/temp', true],
      ['users/+/temp', 'users/#', false],
      ['users/a/temp', 'users/+/temp', false],
      ['users/a', 'users/a/b', false],
      ['users/a/b', 'users/a', false],
      ['#', '#', true],
      ['#', '$SYS/#', false],
      ['+/#', 'a', true],
    ]
    for (const [outer, inner, expected] of cases) assert.equal(filterCovers(outer, inner), expected, `${outer} ⊇ ${inner}`)
  })

  test('filtersIntersect: some topic matches both', () => {
    const cases: [string, string, boolean][] = [
      ['secret/#', '#', true],
      ['secret/#', 'secret', true],
      ['a/+/c', 'a/b/+', true],
      ['a/b', 'a/c', false],
      ['a/+', 'a', false],
      ['$SYS/#', '#', false],
      ['$SYS/#', '$SYS/+', true],
    ]
    for (const [a, b, expected] of cases) {
      assert.equal(filtersIntersect(a, b), expected, `${a} ∩ ${b}`)
      assert.equal(filtersIntersect(b, a), expected, `${b} ∩ ${a}`)
    }
  })
})

describe('ACL decisions', () => {
  const acl: AclEntry[] = [
    { access: 'readwrite', topic: 'users/alice/#' },
    { access: 'read', topic: 'public/#' },
    { access: 'write', topic: 'telemetry/+/alice' },
    { access: 'deny', topic: 'public/secret/#' },
  ]

  test('publish needs a write or readwrite entry; deny wins', () => {
    assert.equal(aclAllowsPublish(acl, 'users/alice/x'), true)
    assert.equal(aclAllowsPublish(acl, 'telemetry/t1/alice'), true)
    assert.equal(aclAllowsPublish(acl, 'public/news'), false, 'read only')
    assert.equal(aclAllowsPublish(acl, 'users/bob/x'), false, 'no entry')
    assert.equal(aclAllowsPublish([...acl, { access: 'deny', topic: 'users/alice/locked' }], 'users/alice/locked'), false)
  })

  test('subscribe needs a read or readwrite entry covering the filter; an overlapping deny refuses', () => {
    assert.equal(aclAllowsSubscribe(acl, 'users/alice/+/temp'), true)
    assert.equal(aclAllowsSubscribe(acl, 'public/news'), true)
    assert.equal(aclAllowsSubscribe(acl, 'telemetry/+/alice'), false, 'write only')
    assert.equal(aclAllowsSubscribe(acl, 'users/+/x'), false, 'wider than the entry')
    assert.equal(aclAllowsSubscribe(acl, 'public/#'), false, 'could receive public/secret/...')
    assert.equal(aclAllowsSubscribe(acl, 'public/secret/x'), false)
    assert.equal(aclAllowsSubscribe([], 'anything'), false)
  })

  test('parseAcl validates JSON text and objects, naming the bad entry', () => {
    assert.deepEqual(parseAcl('[{"access":"read","topic":"a/#"}]'), [{ access: 'read', topic: 'a/#' }])
    assert.deepEqual(parseAcl([{ access: 'deny', topic: '#', extra: 1 }]), [{ access: 'deny', topic: '#' }])
    const bad: [unknown, RegExp][] = [
      ['not json', /acl is not valid JSON/],
      ['{"access":"read"}', /acl must be a JSON array/],
      [[null], /acl\[0\] must be an object/],
      [[{ access: 'all', topic: 'a' }], /acl\[0\]\.access must be one of "read", "write", "readwrite", "deny", got "all"/],
      [[{ access: 'read', topic: 'a' }, { access: 'read', topic: 'a/#/b' }], /acl\[1\]\.topic must be a valid topic filter, got "a\/#\/b"/],
      [[{ access: 'read', topic: 'a+' }], /acl\[0\]\.topic/],
      [[{ access: 'read', topic: '' }], /acl\[0\]\.topic/],
    ]
    for (const [value, message] of bad) assert.throws(() => parseAcl(value), (err: unknown) => err instanceof AclError && message.test(err.message))
  })
})
