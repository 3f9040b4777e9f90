-- Apply one batch of ONE score-range shard of a sharded board, atomically and idempotently.
--
-- Every shard of the board receives every record with all its entries and runs the same
-- rules as apply.lua, so all shards agree on versions, duplicates, late events and period
-- ends; a shard keeps in its sorted set only the participants whose score lies in its band
-- [lo, hi) and remembers every participant's score and member (hash `a`) to compute the next.
--
-- KEYS: 1 state hash, 2 outbox hash, 3 event-id set, 4 open periods hash, 5 ended periods hash,
--       6 participant metadata hash, then per period i: sorted set (band members only),
--       participant->member hash (band members only), participant->"score\tmember" hash (all).
-- ARGV: partition, sort (desc|asc), lo ('' = unbounded), hi ('' = unbounded), nperiods,
--       nperiods x (period, closes_at), nrecords, records as in apply.lua.
-- Returns {{offset, result}, ...}; result lines as in apply.lua except
--   C idx period pid old_local_rank new_local_rank old_score new_score version operator
--     submitted band_size_before band_size_after
-- where a local rank is empty when the old/new score is outside this shard's band.
-- No notifications: they need global ranks, which the caller derives from the band sizes.
local S, OB, EV, PO, PE, PM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local partition = ARGV[1]
local desc = ARGV[2] == 'desc'
local lo = tonumber(ARGV[3])
local hi = tonumber(ARGV[4])
local np = tonumber(ARGV[5])
local MAX = 9007199254740991

local function fmt(x) return string.format('%.0f', x) end
local function inband(x) return (lo == nil or x >= lo) and (hi == nil or x < hi) end

local a = 6
local periods = {}
for i = 1, np do
  periods[i] = {name = ARGV[a], closes = tonumber(ARGV[a + 1]),
    z = KEYS[4 + 3 * i], m = KEYS[5 + 3 * i], all = KEYS[6 + 3 * i]}
  a = a + 2
end
local nrec = tonumber(ARGV[a]); a = a + 1

local wmf = 'wm:' .. partition
local st = redis.call('HMGET', S, wmf, 'ver', 'maxt')
local wm = tonumber(st[1] or '-1')
local ver = tonumber(st[2] or '0')
local maxt = tonumber(st[3] or '-1')
local open, names = {}, {}
local flat = redis.call('HGETALL', PO)
for i = 1, #flat, 2 do open[flat[i]] = tonumber(flat[i + 1]); names[#names + 1] = flat[i] end

local out = {}
local newwm = wm
for _ = 1, nrec do
  local offset = tonumber(ARGV[a]); local event_id = ARGV[a + 1]; local at = tonumber(ARGV[a + 2])
  local P = periods[tonumber(ARGV[a + 3])]; local ne = tonumber(ARGV[a + 4])
  local estart = a + 5
  a = estart + ne * 5
  if offset <= wm then
    local prev = redis.call('HGET', OB, fmt(offset))
    if prev then out[#out + 1] = {fmt(offset), prev} end
  else
    newwm = offset
    local lines = {}
    if redis.call('HEXISTS', PE, P.name) == 1 then
      lines[#lines + 1] = 'L\tperiod ' .. P.name .. ' is closed: late event'
    elseif redis.call('SADD', EV, event_id) == 0 then
      lines[#lines + 1] = 'D\tduplicate event id ' .. event_id
    else
      if P.closes ~= -1 and open[P.name] == nil then
        open[P.name] = P.closes; names[#names + 1] = P.name
        redis.call('HSET', PO, P.name, fmt(P.closes))
      end
      for e = 0, ne - 1 do
        local b = estart + e * 5
        local idx = ARGV[b]; local pid = ARGV[b + 1]; local sub = tonumber(ARGV[b + 2])
        local op = ARGV[b + 3]; local meta = ARGV[b + 4]
        local rec = redis.call('HGET', P.all, pid)
        local olds, oldm = nil, nil
        if rec then
          local tab = string.find(rec, '\t', 1, true)
          olds = tonumber(string.sub(rec, 1, tab - 1)); oldm = string.sub(rec, tab + 1)
        end
        local new
        if olds == nil then
          if op == 'decr' then new = -sub else new = sub end
        elseif op == 'set' then new = sub
        elseif op == 'incr' then new = olds + sub
        elseif op == 'decr' then new = olds - sub
        elseif (desc and sub > olds) or ((not desc) and sub < olds) then new = sub
        else new = olds end
        if new > MAX or new < -MAX then
          lines[#lines + 1] = 'R\t' .. idx .. '\tscore ' .. fmt(new) .. ' would leave the exact range |score| < 2^53'
        else
          local mem = oldm
          if olds == nil or new ~= olds then
            mem = string.format('%013d%012d%03d', at, offset, tonumber(idx)) .. pid
            redis.call('HSET', P.all, pid, fmt(new) .. '\t' .. mem)
          end
          local zbefore = redis.call('ZCARD', P.z)
          local oldr = nil
          if olds ~= nil and inband(olds) then
            oldr = redis.call('ZRANK', P.z, oldm) + 1
            if mem ~= oldm or not inband(new) then
              redis.call('ZREM', P.z, oldm); redis.call('HDEL', P.m, pid)
            end
          end
          local newr = nil
          if inband(new) then
            if mem ~= oldm or oldr == nil then
              if desc then redis.call('ZADD', P.z, -new, mem) else redis.call('ZADD', P.z, new, mem) end
              redis.call('HSET', P.m, pid, mem)
            end
            newr = redis.call('ZRANK', P.z, mem) + 1
          end
          if meta ~= '' then redis.call('HSET', PM, pid, meta) end
          ver = ver + 1
          lines[#lines + 1] = table.concat({'C', idx, P.name, pid, oldr and tostring(oldr) or '',
            newr and tostring(newr) or '', olds and fmt(olds) or '', fmt(new), fmt(ver), op, fmt(sub),
            tostring(zbefore), tostring(redis.call('ZCARD', P.z))}, '\t')
        end
      end
      if at > maxt then
        maxt = at
        table.sort(names)
        local keep = {}
        for _, name in ipairs(names) do
          if open[name] ~= nil and maxt >= open[name] then
            open[name] = nil
            redis.call('HDEL', PO, name)
            redis.call('HSET', PE, name, fmt(ver))
            lines[#lines + 1] = 'E\t' .. name .. '\t' .. fmt(ver)
          elseif open[name] ~= nil then
            keep[#keep + 1] = name
          end
        end
        names = keep
      end
    end
    local res = table.concat(lines, '\n')
    redis.call('HSET', OB, fmt(offset), res)
    out[#out + 1] = {fmt(offset), res}
  end
end
redis.call('HSET', S, wmf, fmt(newwm), 'ver', fmt(ver), 'maxt', fmt(maxt))
return out
