/**
 * The Lua scripts of the Redis backend (docs/persistence.md, "Lua scripts").
 * Each runs atomically in Redis and touches the keys of one hash slot only:
 * a group's clients, bodies and indexes, or the retained keyspace.
 */

/**
 * Helpers shared by the group scripts. The script declares the locals `BP`
 * (body key prefix), `SESS` and `EXP` (the group's session set and expiry
 * index) before them (Redis forbids globals in scripts).
 */
const CLIENT_HELPERS = `
-- Bodies this script already knows to exist (id -> true), so that a batch
-- fanning one message out asks Redis once; forgotten when a body is deleted.
local BODY_KNOWN = {}
local function unref(id)
  if id == nil or id == '' then return end
  local k = BP .. id
  if redis.call('HINCRBY', k, 'rc', -1) <= 0 then
    redis.call('DEL', k)
    BODY_KNOWN[id] = nil
  end
end

-- Deletes every key of a client, releasing its message references.
local function clear_client(cid, base)
  local q, inf = base .. 'q', base .. 'inf'
  for _, e in ipairs(redis.call('LRANGE', q, 0, -1)) do
    unref(string.match(e, '^%d:%d:%d+:(.*)$'))
  end
  for _, e in ipairs(redis.call('HVALS', inf)) do
    unref(string.match(e, '^%d+:%a:%d:(.*)$'))
  end
  redis.call('DEL', base .. 's', base .. 'subs', q, inf, base .. 'in', base .. 'meta')
  redis.call('SREM', SESS, cid)
  redis.call('ZREM', EXP, cid)
end
`

/**
 * Applies the ops of one group of a batch, in order.
 *
 * KEYS[1] batch marker (hash: tok, res), KEYS[2] group session set,
 * KEYS[3] group expiry index.
 * ARGV[1] batch token, ARGV[2] header (JSON), ARGV[3] marker TTL in ms,
 * ARGV[4..] payloads (message and will payloads, referenced by index).
 *
 * Header: b body key prefix; n, x queue limits (count, bytes; 0 = none);
 * p drop policy (0 oldest, 1 new); c clients [{id, key base}]; m messages
 * [{i id, t topic, q, r, u publisher, s timestamp, p payload ARGV index}];
 * o ops (k kind, c client index, …).
 *
 * Returns {replayed (0/1), results}: results has one comma-separated entry
 * per op: 'q:<evicted>', 'd:full', 'd:big', 'd:nosession', 'r:<count>' or ''.
 * A batch token already recorded in the marker returns the recorded
 * results without applying anything again.
 */
export const APPLY_GROUP = `
local MARK, SESS, EXP = KEYS[1], KEYS[2], KEYS[3]
local token = ARGV[1]
local last = redis.call('HMGET', MARK, 'tok', 'res')
if last[1] == token then return {1, last[2]} end

local h = cjson.decode(ARGV[2])
local BP = h.b
local maxN, maxB, dropNew = h.n, h.x, h.p == 1
local clients, msgs = h.c, h.m
${CLIENT_HELPERS}
local live = {}
local function key(ci, suffix) return clients[ci][2] .. suffix end
local function is_live(ci)
  local v = live[ci]
  if v == nil then
    v = redis.call('EXISTS', key(ci, 's')) == 1
    live[ci] = v
  end
  return v
end
-- Creates the body if it is missing and takes a reference to it.
local function ref(m)
  local k = BP .. m.i
  local exists = BODY_KNOWN[m.i]
  if exists == nil then exists = redis.call('EXISTS', k) == 1 end
  if exists then
    redis.call('HINCRBY', k, 'rc', 1)
  else
    redis.call('HSET', k, 't', m.t, 'p', ARGV[m.p], 'q', m.q, 'r', m.r, 'pub', m.u, 'ts', m.s, 'rc', 1)
  end
  BODY_KNOWN[m.i] = true
end
-- Each client's queue length and queued bytes, read once per batch and
-- written back once at the end (only queue ops and deletion touch them).
local qstate = {}
local function queue_state(ci)
  local st = qstate[ci]
  if st == nil then
    st = { len = redis.call('LLEN', key(ci, 'q')), qb = tonumber(redis.call('HGET', key(ci, 'meta'), 'qb') or '0'), dirty = false }
    qstate[ci] = st
  end
  return st
end

local res = {}
for n, op in ipairs(h.o) do
  local k, ci = op.k, op.c
  local r = ''
  if k == 'ss' then
    local s = key(ci, 's')
    redis.call('DEL', s)
    redis.call('HSET', s, 'clean', op.cl, 'conn', op.cn, 'exp', op.e, 'seen', op.l, 'node', op.nd, 'epoch', op.ep)
    if op.w then
      redis.call('HSET', s, 'wt', op.w.t, 'wp', ARGV[op.w.p], 'wq', op.w.q, 'wr', op.w.r)
    end
    redis.call('SADD', SESS, clients[ci][1])
    if op.e == '' then
      redis.call('ZREM', EXP, clients[ci][1])
    else
      redis.call('ZADD', EXP, op.e, clients[ci][1])
    end
    live[ci] = true
  elseif k == 'sd' then
    clear_client(clients[ci][1], clients[ci][2])
    live[ci] = false
    qstate[ci] = nil
  elseif not is_live(ci) then
    if k == 'qp' then r = 'd:nosession' elseif k == 'qr' then r = 'r:0' end
  elseif k == 'sa' then
    redis.call('HSET', key(ci, 'subs'), op.f, op.q)
  elseif k == 'sr' then
    redis.call('HDEL', key(ci, 'subs'), op.f)
  elseif k == 'qp' then
    local m, size = msgs[op.m], op.z
    if maxB > 0 and size > maxB then
      r = 'd:big'
    else
      local q = key(ci, 'q')
      local st = queue_state(ci)
      local len, qb = st.len, st.qb
      if dropNew and ((maxN > 0 and len + 1 > maxN) or (maxB > 0 and qb + size > maxB)) then
        r = 'd:full'
      else
        -- Reference first: evicting an older entry of the same message cannot free its body.
        ref(m)
        local evicted = 0
        while len > 0 and ((maxN > 0 and len + 1 > maxN) or (maxB > 0 and qb + size > maxB)) do
          local b, id = string.match(redis.call('LPOP', q), '^%d:%d:(%d+):(.*)$')
          unref(id)
          qb = qb - tonumber(b)
          len = len - 1
          evicted = evicted + 1
        end
        redis.call('RPUSH', q, op.q .. ':' .. op.r .. ':' .. size .. ':' .. m.i)
        st.len, st.qb, st.dirty = len + 1, qb + size, true
        r = 'q:' .. evicted
      end
    end
  elseif k == 'qr' then
    local q = key(ci, 'q')
    local st = queue_state(ci)
    local qb = st.qb
    local removed = 0
    while removed < op.n do
      local e = redis.call('LPOP', q)
      if not e then break end
      local b, id = string.match(e, '^%d:%d:(%d+):(.*)$')
      unref(id)
      qb = qb - tonumber(b)
      removed = removed + 1
    end
    if removed > 0 then st.len, st.qb, st.dirty = st.len - removed, qb, true end
    r = 'r:' .. removed
  elseif k == 'is' then
    local inf, field = key(ci, 'inf'), tostring(op.pid)
    local old = redis.call('HGET', inf, field)
    local oseq, oret, oid
    if old then oseq, oret, oid = string.match(old, '^(%d+):%a:(%d):(.*)$') end
    oid = oid or ''
    local id = oid
    if op.st == 'c' then
      id = ''
    elseif op.m then
      id = msgs[op.m].i
      if id ~= oid then ref(msgs[op.m]) end
    end
    if oid ~= '' and oid ~= id then unref(oid) end
    local seq = oseq or redis.call('HINCRBY', key(ci, 'meta'), 'seq', 1)
    local ret = op.r or oret or 0
    redis.call('HSET', inf, field, seq .. ':' .. op.st .. ':' .. ret .. ':' .. id)
  elseif k == 'ic' then
    local inf, field = key(ci, 'inf'), tostring(op.pid)
    local old = redis.call('HGET', inf, field)
    if old then
      unref(string.match(old, '^%d+:%a:%d:(.*)$'))
      redis.call('HDEL', inf, field)
    end
  elseif k == 'na' then
    redis.call('SADD', key(ci, 'in'), op.pid)
  elseif k == 'nr' then
    redis.call('SREM', key(ci, 'in'), op.pid)
  end
  res[n] = r
end

for ci, st in pairs(qstate) do
  if st.dirty then redis.call('HSET', key(ci, 'meta'), 'qb', st.qb) end
end
local out = table.concat(res, ',')
redis.call('HSET', MARK, 'tok', token, 'res', out)
redis.call('PEXPIRE', MARK, ARGV[3])
return {0, out}
`

/**
 * Removes the expired sessions of one group, at most ARGV[2] per call.
 *
 * KEYS[1] group expiry index, KEYS[2] group session set.
 * ARGV[1] now (ms), ARGV[2] limit, ARGV[3] client key prefix (`P c:`),
 * ARGV[4] body key prefix of the group.
 *
 * The session's own `exp` field decides; an index entry that disagrees
 * with it is corrected. Returns {candidates examined, {removed client ids}}.
 */
export const EXPIRE_GROUP = `
local EXP, SESS = KEYS[1], KEYS[2]
local BP = ARGV[4]
${CLIENT_HELPERS}
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', EXP, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local removed = {}
for _, cid in ipairs(ids) do
  local enc = string.gsub(cid, '[%%{}]', function(c) return string.format('%%%02X', string.byte(c)) end)
  local base = ARGV[3] .. '{' .. enc .. '}:'
  local exp = redis.call('HGET', base .. 's', 'exp')
  if exp and exp ~= '' and tonumber(exp) <= now then
    clear_client(cid, base)
    removed[#removed + 1] = cid
  elseif exp and exp ~= '' then
    redis.call('ZADD', EXP, exp, cid)
  else
    redis.call('ZREM', EXP, cid)
  end
end
return {#ids, removed}
`

/**
 * Applies the retained ops of a batch, in order.
 *
 * KEYS[1] retained index. ARGV[1] retained key prefix (`P r:{r}:t:`),
 * ARGV[2] ops (JSON: [{k 's'|'d', t topic, i id, q, u publisher,
 * s timestamp, p payload ARGV index}]), ARGV[3..] payloads.
 *
 * Setting and deleting are idempotent, so a replayed batch is harmless.
 */
export const APPLY_RETAINED = `
local IDX, PRE = KEYS[1], ARGV[1]
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do
  local k = PRE .. op.t
  redis.call('DEL', k)
  if op.k == 's' then
    redis.call('HSET', k, 'id', op.i, 'p', ARGV[op.p], 'q', op.q, 'pub', op.u, 'ts', op.s)
    redis.call('ZADD', IDX, 0, op.t)
  else
    redis.call('ZREM', IDX, op.t)
  end
end
return #ops
`
