/**
 * The Lua scripts of the Redis backend (docs/persistence.md, "Lua scripts").
 * Each runs atomically in Redis and touches the keys of one hash slot only:
 * a group's clients, bodies and indexes, or the retained keyspace.
 */

/**
 * Helpers shared by the group scripts. The script declares the locals
 * `BODIES` and `REFS` (the group's message bodies and reference counts),
 * `SESS` and `EXP` (its session set and expiry index) before them (Redis
 * forbids globals in scripts).
 *
 * Reference counts are read at most once per script, changed in a Lua
 * table, and written back at the end by `flush_refs` together with the new
 * bodies and the deletions: a batch of N queued messages costs a few
 * multi-field commands instead of 2N single ones, and no body is deleted
 * and re-created within one batch.
 */
const CLIENT_HELPERS = `
local RC = {}       -- id -> reference count as this script leaves it
local EXISTED = {}  -- id -> true: the body was stored when the script began
local NEWBODY = {}  -- id -> metadata and payload of a body this script creates
local function load_refs(ids)
  for i = 1, #ids, 1000 do
    local chunk = {unpack(ids, i, math.min(i + 999, #ids))}
    local got = redis.call('HMGET', REFS, unpack(chunk))
    for k, id in ipairs(chunk) do
      if RC[id] == nil then
        local n = tonumber(got[k] or '0') or 0
        RC[id] = n
        if n > 0 then EXISTED[id] = true end
      end
    end
  end
end
local function refs_of(id)
  local n = RC[id]
  if n == nil then
    n = tonumber(redis.call('HGET', REFS, id) or '0') or 0
    RC[id] = n
    if n > 0 then EXISTED[id] = true end
  end
  return n
end
local function unref(id)
  if id == nil or id == '' then return end
  RC[id] = refs_of(id) - 1
end
-- Sends one command with a long argument list, in chunks (unpack is bounded by the Lua C stack).
local function chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end
local function flush_refs()
  local counts, bodies, gone = {}, {}, {}
  for id, n in pairs(RC) do
    if n > 0 then
      counts[#counts + 1] = id
      counts[#counts + 1] = n
      local data = NEWBODY[id]
      if data and not EXISTED[id] then
        bodies[#bodies + 1] = id
        bodies[#bodies + 1] = data
      end
    elseif EXISTED[id] then
      gone[#gone + 1] = id
    end
  end
  chunked('HSET', REFS, counts)
  chunked('HSET', BODIES, bodies)
  chunked('HDEL', REFS, gone)
  chunked('HDEL', BODIES, gone)
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
 * KEYS[3] group expiry index, KEYS[4] group message bodies (hash: id →
 * metadata and payload), KEYS[5] their reference counts (hash: id → count).
 * ARGV[1] batch token, ARGV[2] header (JSON), ARGV[3] marker TTL in ms,
 * then message m's body (1-based, ARGV[3 + m]: `bodyData` in ./redis.ts),
 * then will payloads (will k at ARGV[3 + message count + k]).
 *
 * The header is positional (arrays decode about twice as fast as objects in
 * cjson, and the script runs once per batch on the hot path):
 * [queue limit count, queue limit bytes (0 = none),
 *  drop policy (0 oldest, 1 new), clients [id1, key base1, id2, …],
 *  message ids [id1, …], ops [[kind, client index, …], …]].
 * Ops: ss [clean, conn, exp ('' = none), seen, node, epoch, (will topic,
 * will qos, will retain, will number k)]; sd; sa [filter, qos];
 * sr [filter]; qp [message, qos, retain, payload bytes]; qr [count];
 * is [packet id, stage a|r|c, message (0 = keep), retain (-1 = keep)];
 * ic, na, nr [packet id].
 *
 * Returns {replayed (0/1), results}: results has one comma-separated entry
 * per op: 'q:<evicted>', 'd:full', 'd:big', 'd:nosession', 'r:<count>' or ''.
 * A batch token already recorded in the marker returns the recorded
 * results without applying anything again.
 */
export const APPLY_GROUP = `
local MARK, SESS, EXP, BODIES, REFS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token = ARGV[1]
local last = redis.call('HMGET', MARK, 'tok', 'res')
if last[1] == token then return {1, last[2]} end

local h = cjson.decode(ARGV[2])
local maxN, maxB, dropNew, clients, mids = h[1], h[2], h[3] == 1, h[4], h[5]
-- Message m's body (metadata and payload) is ARGV[MB + m].
local MB = 3
${CLIENT_HELPERS}
load_refs(mids)
local live = {}
local function cid(ci) return clients[2 * ci - 1] end
local function key(ci, suffix) return clients[2 * ci] .. suffix end
local function is_live(ci)
  local v = live[ci]
  if v == nil then
    v = redis.call('EXISTS', key(ci, 's')) == 1
    live[ci] = v
  end
  return v
end
-- Takes a reference to message m, creating its body if it is not stored.
local function ref(m)
  local id = mids[m]
  local n = refs_of(id)
  if n <= 0 and not EXISTED[id] then NEWBODY[id] = ARGV[MB + m] end
  RC[id] = n + 1
end
-- Each client's queue: its length and queued bytes, read once per batch and
-- written back once at the end, and the entries pushed by this batch, sent
-- in one RPUSH before anything reads or pops the list.
local qstate = {}
local function queue_state(ci)
  local st = qstate[ci]
  if st == nil then
    st = { len = redis.call('LLEN', key(ci, 'q')), qb = tonumber(redis.call('HGET', key(ci, 'meta'), 'qb') or '0'), dirty = false, pend = {} }
    qstate[ci] = st
  end
  return st
end
local function push_pending(ci, st)
  if #st.pend == 0 then return end
  chunked('RPUSH', key(ci, 'q'), st.pend)
  st.pend = {}
end

local res = {}
for n, op in ipairs(h[6]) do
  local k, ci = op[1], op[2]
  local r = ''
  if k == 'ss' then
    local s = key(ci, 's')
    redis.call('DEL', s)
    redis.call('HSET', s, 'clean', op[3], 'conn', op[4], 'exp', op[5], 'seen', op[6], 'node', op[7], 'epoch', op[8])
    if op[9] then
      redis.call('HSET', s, 'wt', op[9], 'wp', ARGV[MB + #mids + op[12]], 'wq', op[10], 'wr', op[11])
    end
    redis.call('SADD', SESS, cid(ci))
    if op[5] == '' then
      redis.call('ZREM', EXP, cid(ci))
    else
      redis.call('ZADD', EXP, op[5], cid(ci))
    end
    live[ci] = true
  elseif k == 'sd' then
    -- Entries pushed earlier in this batch hold body references: list them so clear_client releases them.
    if qstate[ci] then push_pending(ci, qstate[ci]) end
    clear_client(cid(ci), clients[2 * ci])
    live[ci] = false
    qstate[ci] = nil
  elseif not is_live(ci) then
    if k == 'qp' then r = 'd:nosession' elseif k == 'qr' then r = 'r:0' end
  elseif k == 'sa' then
    redis.call('HSET', key(ci, 'subs'), op[3], op[4])
  elseif k == 'sr' then
    redis.call('HDEL', key(ci, 'subs'), op[3])
  elseif k == 'qp' then
    local m, size = op[3], op[6]
    if maxB > 0 and size > maxB then
      r = 'd:big'
    else
      local st = queue_state(ci)
      local len, qb = st.len, st.qb
      if dropNew and ((maxN > 0 and len + 1 > maxN) or (maxB > 0 and qb + size > maxB)) then
        r = 'd:full'
      else
        -- Reference first: evicting an older entry of the same message cannot free its body.
        ref(m)
        local evicted = 0
        if len > 0 and ((maxN > 0 and len + 1 > maxN) or (maxB > 0 and qb + size > maxB)) then
          push_pending(ci, st)
          local q = key(ci, 'q')
          while len > 0 and ((maxN > 0 and len + 1 > maxN) or (maxB > 0 and qb + size > maxB)) do
            local b, id = string.match(redis.call('LPOP', q), '^%d:%d:(%d+):(.*)$')
            unref(id)
            qb = qb - tonumber(b)
            len = len - 1
            evicted = evicted + 1
          end
        end
        local pend = st.pend
        pend[#pend + 1] = op[4] .. ':' .. op[5] .. ':' .. size .. ':' .. mids[m]
        st.len, st.qb, st.dirty = len + 1, qb + size, true
        r = 'q:' .. evicted
      end
    end
  elseif k == 'qr' then
    local q = key(ci, 'q')
    local st = queue_state(ci)
    push_pending(ci, st)
    local qb = st.qb
    local removed = 0
    while removed < op[3] do
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
    local inf, field = key(ci, 'inf'), tostring(op[3])
    local old = redis.call('HGET', inf, field)
    local oseq, oret, oid
    if old then oseq, oret, oid = string.match(old, '^(%d+):%a:(%d):(.*)$') end
    oid = oid or ''
    local id = oid
    local stage, m, ret = op[4], op[5], op[6]
    if stage == 'c' then
      id = ''
    elseif m > 0 then
      id = mids[m]
      if id ~= oid then ref(m) end
    end
    if oid ~= '' and oid ~= id then unref(oid) end
    local seq = oseq or redis.call('HINCRBY', key(ci, 'meta'), 'seq', 1)
    if ret < 0 then ret = oret or 0 end
    redis.call('HSET', inf, field, seq .. ':' .. stage .. ':' .. ret .. ':' .. id)
  elseif k == 'ic' then
    local inf, field = key(ci, 'inf'), tostring(op[3])
    local old = redis.call('HGET', inf, field)
    if old then
      unref(string.match(old, '^%d+:%a:%d:(.*)$'))
      redis.call('HDEL', inf, field)
    end
  elseif k == 'na' then
    redis.call('SADD', key(ci, 'in'), op[3])
  elseif k == 'nr' then
    redis.call('SREM', key(ci, 'in'), op[3])
  end
  res[n] = r
end

for ci, st in pairs(qstate) do
  push_pending(ci, st)
  if st.dirty then redis.call('HSET', key(ci, 'meta'), 'qb', st.qb) end
end
flush_refs()
local out = table.concat(res, ',')
redis.call('HSET', MARK, 'tok', token, 'res', out)
redis.call('PEXPIRE', MARK, ARGV[3])
return {0, out}
`

/**
 * Removes the expired sessions of one group, at most ARGV[2] per call.
 *
 * KEYS[1] group expiry index, KEYS[2] group session set, KEYS[3] group
 * message bodies, KEYS[4] their reference counts.
 * ARGV[1] now (ms), ARGV[2] limit, ARGV[3] client key prefix (`P c:`).
 *
 * The session's own `exp` field decides; an index entry that disagrees
 * with it is corrected. Returns {candidates examined, {removed client ids}}.
 */
export const EXPIRE_GROUP = `
local EXP, SESS, BODIES, REFS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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
flush_refs()
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
