-- The ranking rules shared by apply.lua and range_apply.lua: this prelude is prepended to each
-- (projections/scripts.py), which then defines its `board` hooks and returns apply_batch(board).
-- Applies one batch of ONE board (or board shard) atomically and idempotently.
--
-- KEYS: 1 state hash (ver, maxt, hz = dedup horizon, wm:<partition>), 2 outbox hash (offset -> packed result),
--       3 event ids (sorted set scored by event time: the bounded duplicate window),
--       4 open periods hash (period -> closes_at), 5 ended periods hash,
--       6 participant metadata hash, then board.keys_per_period keys per period i:
--       sorted set, participant->member hash[, participant->"score\tmember" hash].
-- ARGV: partition, sort (desc|asc), two numeric board arguments (board.init), dedup window
--       (ms of event time), dedup max ids, cut (board time at which a closed board's periods
--       all end: its closing plus the grace; -1 if open), nperiods,
--       nperiods x (period, closes_at), nrecords,
--       nrecords x (position, event_id, at = ranking time, period_index, refusal, nentries,
--                   nentries x (entry_index, participant_id, score, operator, metadata_json)),
--       guard key (or ''). A record with an empty event_id and no entries is a clock mark: it
--       only moves the board's time to `at`, ending the periods it passes. A position is the
--       record's offset, or 'offset:index' for submission `index` of a coalesced record: the
--       offset is the watermark's, the position names its outbox result.
-- Returns one msgpack-packed result per record (the outbox's bytes, unpacked in Python: far
-- smaller and faster than a nested Redis reply), in the layout of projections/results.py:
--   {offset, changes, notices, rejected, refused, ended, position} with
--   changes  = {{entry_index, period, pid, old_rank, new_rank, old_score, new_score, version,
--                operator, submitted[, band_size_before, band_size_after]}, ...} (ChangeRow),
--   notices  = {{kind, period, pid, rank, by, version, top_n, omitted}, ...} (NoticeRow),
--   rejected = {{entry_index, reason}, ...}, refused = duplicate/late reason or false,
--   ended    = {{period, version}, ...}; false stands for "none".
-- The result is stored msgpack-packed in the outbox: a record at or below the partition's
-- watermark was applied before, so its stored result is returned again (if not yet
-- acknowledged) and nothing is changed.
-- The last ARGV names a marker key that must exist (empty: no check); it is gone when Redis lost
-- its data, and applying onto that empty state would restart the board's versions.
local guard = ARGV[#ARGV]
if guard ~= '' and redis.call('EXISTS', guard) == 0 then
  return redis.error_reply('NOEPOCH projection marker ' .. guard .. ' is missing')
end
local S, OB, EV, PO, PE, PM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local partition = ARGV[1]
local desc = ARGV[2] == 'desc'
local MAX = 9007199254740991
-- Length of a member's tie-break prefix (event time, offset, entry index); the pid follows.
local W = 33

local function fmt(x) return string.format('%.0f', x) end

-- The participant's next score, from the old one (nil: first entry) and the entry's operator.
local function next_score(olds, op, sub)
  if olds == nil then
    if op == 'decr' then return -sub end
    return sub
  elseif op == 'set' then return sub
  elseif op == 'incr' then return olds + sub
  elseif op == 'decr' then return olds - sub
  elseif (desc and sub > olds) or ((not desc) and sub < olds) then return sub
  end
  return olds
end

-- Sorted-set score of a participant score (the best ranks first, ascending).
local function zscore(score)
  if desc then return -score end
  return score
end

-- The batch's periods (count at ARGV[a]) and their keys; returns them and the next ARGV index.
local function read_periods(a, kp)
  local periods = {}
  for i = 1, tonumber(ARGV[a]) do
    local k = 6 + (i - 1) * kp
    periods[i] = {name = ARGV[a + 2 * i - 1], closes = tonumber(ARGV[a + 2 * i]),
      z = KEYS[k + 1], m = KEYS[k + 2], all = kp > 2 and KEYS[k + 3] or nil}
  end
  return periods, a + 1 + 2 * #periods
end

-- Why the record's entries cannot all apply (a score that would leave the exact range, in
-- entry order, as the entries would apply one after the other), or nil: a match applies whole
-- or not at all, so this runs before anything of the record is changed.
local function refuse_entries(board, P, rec)
  -- best and set keep a score inside the range (every submitted score is): only incr and decr
  -- can leave it, so a match without them needs no look-up
  local arith = false
  for e = 0, rec.ne - 1 do
    local op = ARGV[rec.estart + e * 5 + 3]
    if op == 'incr' or op == 'decr' then arith = true; break end
  end
  if not arith then return nil end
  local sim = {}
  for e = 0, rec.ne - 1 do
    local b = rec.estart + e * 5
    local pid = ARGV[b + 1]
    local olds = sim[pid]
    if olds == nil then olds = board.lookup(P, pid) end
    local new = next_score(olds, ARGV[b + 3], tonumber(ARGV[b + 2]))
    if new > MAX or new < -MAX then
      return 'entries[' .. ARGV[b] .. ']: score ' .. fmt(new) ..
        ' would leave the exact range |score| < 2^53'
    end
    sim[pid] = new
  end
  return nil
end

-- Apply one record's valid entries (ARGV[estart ..]) to period P; returns the new version.
local function apply_entries(board, P, rec, ver, changes, notices, rejected)
  for e = 0, rec.ne - 1 do
    local b = rec.estart + e * 5
    local idx = tonumber(ARGV[b]); local pid = ARGV[b + 1]; local sub = tonumber(ARGV[b + 2])
    local op = ARGV[b + 3]; local meta = ARGV[b + 4]
    local olds, oldm = board.lookup(P, pid)
    local new = next_score(olds, op, sub)
    local mem = oldm
    local moved = olds == nil or new ~= olds
    if moved then mem = string.format('%013d%015d%05d', rec.at, rec.offset, idx) .. pid end
    local oldr, newr, zbefore, zafter = board.place(P, pid, olds, oldm, new, mem, moved)
    if meta ~= '' then redis.call('HSET', PM, pid, meta) end
    ver = ver + 1
    changes[#changes + 1] = {idx, P.name, pid, oldr or false, newr or false, olds or false, new,
      ver, op, sub, zbefore, zafter}
    board.notify(P, pid, oldr, newr, ver, notices)
  end
  return ver
end

local function apply_batch(board)
  board.init(tonumber(ARGV[3]), tonumber(ARGV[4]))
  local window, cap, cut = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local periods, a = read_periods(8, board.keys_per_period)
  local nrec = tonumber(ARGV[a]); a = a + 1
  local wmf = 'wm:' .. partition
  local st = redis.call('HMGET', S, wmf, 'ver', 'maxt', 'hz')
  local wm = tonumber(st[1] or '-1')
  local ver = tonumber(st[2] or '0')
  local maxt = tonumber(st[3] or '-1')
  -- the dedup horizon: event ids older than it are forgotten, so records older are refused
  local hz = tonumber(st[4] or '0')
  local function forget_before(h)
    if h > hz then
      hz = h
      redis.call('ZREMRANGEBYSCORE', EV, '-inf', '(' .. fmt(hz))
    end
  end
  local open, names = {}, {}
  local flat = redis.call('HGETALL', PO)
  for i = 1, #flat, 2 do open[flat[i]] = tonumber(flat[i + 1]); names[#names + 1] = flat[i] end
  -- a board closed since its periods opened: every open period ends at the cut at the latest
  if cut ~= -1 then
    for _, name in ipairs(names) do
      if open[name] > cut then
        open[name] = cut
        redis.call('HSET', PO, name, fmt(cut))
      end
    end
  end

  local out = {}
  local newwm = wm
  for _ = 1, nrec do
    local pos = ARGV[a]; local offset = tonumber(string.match(pos, '^%-?%d+'))
    local event_id = ARGV[a + 1]; local at = tonumber(ARGV[a + 2])
    local P = periods[tonumber(ARGV[a + 3])]; local pre = ARGV[a + 4]
    local ne = tonumber(ARGV[a + 5])
    local estart = a + 6
    a = estart + ne * 5
    if offset <= wm then
      local prev = redis.call('HGET', OB, pos)
      if prev then out[#out + 1] = prev end
    else
      newwm = offset
      local changes, notices, rejected, refused, ended = {}, {}, {}, false, {}
      local rec = {ne = ne, estart = estart, at = at, offset = offset}
      local mark = event_id == ''
      -- a mark opens a period that has standings but could not end when it opened (an
      -- all-time board closed since), so that it can end now
      if mark and P.closes ~= -1 and open[P.name] == nil
          and redis.call('HEXISTS', PE, P.name) == 0 and redis.call('EXISTS', P.z) == 1 then
        open[P.name] = P.closes; names[#names + 1] = P.name
        redis.call('HSET', PO, P.name, fmt(P.closes))
      end
      -- late: the period ended, or would have ended had it been opened (the board's time is
      -- past its end plus the grace)
      if mark then
        refused = false
      elseif (P.closes ~= -1 and maxt >= P.closes) or redis.call('HEXISTS', PE, P.name) == 1 then
        refused = 'period ' .. P.name .. ' is closed: late event'
      elseif at < hz then
        refused = 'event time is older than the deduplication horizon ' .. fmt(hz) ..
          ': a duplicate of it could no longer be detected'
      elseif redis.call('ZADD', EV, 'NX', at, event_id) == 0 then
        refused = 'duplicate event id ' .. event_id
      else
        -- a refusal decided before the script (invalid entries, a hash-sharded overflow), else
        -- this script's own check: either way the match applies whole or not at all
        if pre ~= '' then refused = pre else refused = refuse_entries(board, P, rec) or false end
        if refused then redis.call('ZREM', EV, event_id) end
      end
      if not refused then
        if mark then
          -- nothing to open or apply: only the time moves
        elseif P.closes ~= -1 and open[P.name] == nil then
          open[P.name] = P.closes; names[#names + 1] = P.name
          redis.call('HSET', PO, P.name, fmt(P.closes))
        end
        if not mark then ver = apply_entries(board, P, rec, ver, changes, notices, rejected) end
        if at > maxt then
          maxt = at
          table.sort(names)
          local keep = {}
          for _, name in ipairs(names) do
            if open[name] ~= nil and maxt >= open[name] then
              open[name] = nil
              redis.call('HDEL', PO, name)
              redis.call('HSET', PE, name, fmt(ver))
              ended[#ended + 1] = {name, ver}
            elseif open[name] ~= nil then
              keep[#keep + 1] = name
            end
          end
          names = keep
          forget_before(maxt - window)
        end
        if redis.call('ZCARD', EV) > cap then
          local oldest = redis.call('ZRANGE', EV, 0, 0, 'WITHSCORES')
          forget_before(tonumber(oldest[2]) + 1)
        end
      end
      local res = {offset, changes, notices, rejected, refused, ended, pos}
      local packed = cmsgpack.pack(res)
      redis.call('HSET', OB, pos, packed)
      out[#out + 1] = packed
    end
  end
  redis.call('HSET', S, wmf, fmt(newwm), 'ver', fmt(ver), 'maxt', fmt(maxt), 'hz', fmt(hz))
  return out
end
