-- Apply one batch of ONE score-range shard of a sharded board: the rules of rules.lua
-- (prepended), so all shards agree on versions, duplicates, late events and period ends.
--
-- Every shard receives every record with all its entries; a shard keeps in its sorted set only
-- the participants whose score lies in its band [lo, hi) and remembers every participant's
-- score and member (hash `all`) to compute the next.
-- Board ARGV (3, 4): lo ('' = unbounded), hi ('' = unbounded); the projection marker is
-- checked as for every board (rules.lua), so a shard never restarts its versions on an emptied
-- Redis.
-- KEYS per period: sorted set (band members only), participant index stem (band members
-- only, rules.lua index_key), participant->"score\tmember" hash (all).
-- Changes carry local ranks (false when the old/new score is outside this band) and the band's
-- size before and after the change. No notifications: they need global ranks, which the
-- caller derives from the band sizes.
local lo, hi
local board = {keys_per_period = 3}
function board.init(low, high) lo, hi = low, high end -- nil: unbounded

local function inband(x) return (lo == nil or x >= lo) and (hi == nil or x < hi) end

function board.lookup(P, pid)
  local rec = redis.call('HGET', P.all, pid)
  if not rec then return nil, nil end
  local tab = string.find(rec, '\t', 1, true)
  return tonumber(string.sub(rec, 1, tab - 1)), string.sub(rec, tab + 1)
end

function board.place(P, pid, olds, oldm, new, mem, moved, bk, iv)
  if moved then redis.call('HSET', P.all, pid, fmt(new) .. '\t' .. mem) end
  local zbefore = redis.call('ZCARD', P.z)
  local oldr = nil
  if olds ~= nil and inband(olds) then
    oldr = redis.call('ZRANK', P.z, oldm) + 1
    if mem ~= oldm or not inband(new) then
      redis.call('ZREM', P.z, oldm); index_del(P, pid, bk)
    end
  end
  local newr = nil
  if inband(new) then
    if mem ~= oldm or oldr == nil then
      redis.call('ZADD', P.z, zscore(new), mem)
      index_set(P, pid, mem, bk, iv)
    end
    newr = redis.call('ZRANK', P.z, mem) + 1
  end
  return oldr, newr, zbefore, redis.call('ZCARD', P.z)
end

function board.notify() end

return apply_batch(board)
