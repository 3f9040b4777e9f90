-- Apply one batch of match results of ONE leaderboard atomically and idempotently.
--
-- KEYS: 1 state hash (ver, maxt, wm:<partition>), 2 outbox hash (offset -> result),
--       3 event-id set, 4 open periods hash (period -> closes_at), 5 ended periods hash,
--       6 participant metadata hash, then per period i: sorted set, participant->member hash.
-- ARGV: partition, sort (desc|asc), watch_top_n, overtaken_limit, nperiods,
--       nperiods x (period, closes_at), nrecords,
--       nrecords x (offset, event_id, occurred_at, period_index, nentries,
--                   nentries x (entry_index, participant_id, score, operator, metadata_json)),
--       guard key (or '').
-- Returns {{offset, result}, ...}: one result string per record, newline-separated lines:
--   C idx period pid old_rank new_rank old_score new_score version operator submitted
--   N kind period pid rank by version top_n omitted
--   R idx reason | D reason | L reason | E period version
-- A record at or below the partition's watermark was applied before: its stored result is
-- returned again (if not yet acknowledged), nothing is changed.
-- The last ARGV names a marker key that must exist (empty: no check); it is gone when Redis lost
-- its data, and applying onto that empty state would restart the board's versions.
local guard = ARGV[#ARGV]
if guard ~= '' and redis.call('EXISTS', guard) == 0 then
  return redis.error_reply('NOEPOCH projection marker ' .. guard .. ' is missing')
end
local S, OB, EV, PO, PE, PM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local partition = ARGV[1]
local desc = ARGV[2] == 'desc'
local watch = tonumber(ARGV[3])
local olimit = tonumber(ARGV[4])
local np = tonumber(ARGV[5])
local MAX = 9007199254740991
local W = 28

local function fmt(x) return string.format('%.0f', x) end

local a = 6
local periods = {}
for i = 1, np do
  periods[i] = {name = ARGV[a], closes = tonumber(ARGV[a + 1]), z = KEYS[5 + 2 * i], m = KEYS[6 + 2 * i]}
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
        local oldm = redis.call('HGET', P.m, pid)
        local olds, oldr = nil, nil
        if oldm then
          local k = tonumber(redis.call('ZSCORE', P.z, oldm))
          if desc then olds = -k else olds = k end
          oldr = redis.call('ZRANK', P.z, oldm) + 1
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
            if oldm then redis.call('ZREM', P.z, oldm) end
            if desc then redis.call('ZADD', P.z, -new, mem) else redis.call('ZADD', P.z, new, mem) end
            redis.call('HSET', P.m, pid, mem)
          end
          if meta ~= '' then redis.call('HSET', PM, pid, meta) end
          local newr = oldr
          if mem ~= oldm then newr = redis.call('ZRANK', P.z, mem) + 1 end
          ver = ver + 1
          local v = fmt(ver)
          lines[#lines + 1] = table.concat({'C', idx, P.name, pid, oldr and tostring(oldr) or '',
            tostring(newr), olds and fmt(olds) or '', fmt(new), v, op, fmt(sub)}, '\t')
          if oldr and newr < oldr and olimit > 0 then
            local last = math.min(oldr, newr + olimit)
            local passed = redis.call('ZRANGE', P.z, newr, last - 1)
            local omitted = (oldr - newr) - #passed
            for i, pmem in ipairs(passed) do
              local om = '0'
              if i == #passed then om = tostring(omitted) end
              lines[#lines + 1] = table.concat({'N', 'overtaken', P.name, string.sub(pmem, W + 1),
                tostring(newr + i), pid, v, '0', om}, '\t')
            end
          end
          if watch > 0 then
            local was = oldr ~= nil and oldr <= watch
            local now = newr <= watch
            if now and not was then
              lines[#lines + 1] = table.concat({'N', 'entered_top_n', P.name, pid, tostring(newr), '', v, tostring(watch), '0'}, '\t')
              local pushed = redis.call('ZRANGE', P.z, watch, watch)
              if pushed[1] then
                lines[#lines + 1] = table.concat({'N', 'left_top_n', P.name, string.sub(pushed[1], W + 1),
                  tostring(watch + 1), pid, v, tostring(watch), '0'}, '\t')
              end
            elseif was and not now then
              lines[#lines + 1] = table.concat({'N', 'left_top_n', P.name, pid, tostring(newr), '', v, tostring(watch), '0'}, '\t')
              local pulled = redis.call('ZRANGE', P.z, watch - 1, watch - 1)
              if pulled[1] then
                lines[#lines + 1] = table.concat({'N', 'entered_top_n', P.name, string.sub(pulled[1], W + 1),
                  tostring(watch), '', v, tostring(watch), '0'}, '\t')
              end
            end
          end
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
