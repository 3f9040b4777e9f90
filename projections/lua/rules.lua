-- The ranking rules shared by apply.lua and range_apply.lua: this prelude is prepended to each
-- (projections/scripts.py), which then defines its `board` hooks and returns apply_batch(board).
-- Applies one batch of ONE board (or board shard) atomically and idempotently.
--
-- KEYS: 1 state hash (ver, maxt, hz = dedup horizon, wm:<partition>), 2 outbox hash (offset -> packed result),
--       3 remembered event ids: a hash day -> count (rules.dedup_day of the event time), the
--       ids (event_key forms) in the day's bucket hashes <KEYS[3]>:<day>:<ev_bucket>,
--       4 open periods hash (period -> closes_at), 5 ended periods hash,
--       6 participant metadata hash, then board.keys_per_period keys per period i:
--       sorted set, stem of the bucketed participant index (index_key)[, participant->
--       "score\tmember" hash].
-- ARGV: partition, sort (desc|asc), two numeric board arguments (board.init), dedup window
--       (ms of event time), dedup max ids, cut (board time at which a closed board's periods
--       all end: its closing plus the grace; -1 if open), max_attempts (-1: none),
--       max_participants (-1: none), retain (1: keep every entry, for exact voids), key base
--       (the board's key prefix, ending in ':'), nperiods,
--       nperiods x (period, closes_at), nrecords,
--       nrecords x (position, event_id, event key (projections/keys.py event_key: the form the
--                   event-id set stores), its bucket (keys.event_bucket; '' for a clock mark),
--                   at = ranking time, period_index, refusal, action, target, nentries,
--                   nentries x (entry_index, participant_id, score, operator, metadata_json,
--                               tie-break prefix (rules.member of at, offset, entry_index),
--                               index bucket (projections/keys.py index_bucket), the prefix
--                               as the index stores it (keys.index_value))),
--       guard key (or ''). A record with an empty event_id and no entries is a clock mark: it
--       only moves the board's time to `at`, ending the periods it passes. A position is the
--       record's offset, or 'offset:index' for submission `index` of a coalesced record: the
--       offset is the watermark's, the position names its outbox result. A record with an
--       action is a moderation (participant_removed | match_voided | participant_banned |
--       participant_unbanned of `target`, a participant id or a voided event id; plain boards
--       only). Keys derived from the key base (same hash tag, so one slot on a cluster):
--       bn (banned participants), mx (retained match -> its period and members), and per
--       period at:<period> (participant -> matches applied, with tournament limits) and
--       h:<period> (participant -> its retained entries "prefix\top\tsubmitted", one a line).
-- Returns one msgpack-packed result per record (the outbox's bytes, unpacked in Python: far
-- smaller and faster than a nested Redis reply), in the layout of projections/results.py:
--   {offset, changes, notices, rejected, refused, ended, position} with
--   changes  = {{entry_index, period, pid, old_rank, new_rank, old_score, new_score, version,
--                operator, submitted[, band_size_before, band_size_after]}, ...} (ChangeRow),
--   notices  = {{kind, period, pid, rank, by, version, top_n, omitted}, ...} (NoticeRow; an
--              `overtaken` row lists the passed members in place of pid, rank the first's:
--              results.decode makes it one row each),
--   rejected = {{entry_index, reason}, ...}, refused = duplicate/late reason or false,
--   ended    = {{period, version}, ...}; false stands for "none".
-- The result is stored msgpack-packed in the outbox: a record at or below the partition's
-- watermark was applied before, so its stored result is returned again (if not yet
-- acknowledged) and nothing is changed.
-- The arguments above arrive as ONE msgpack array (projections/scripts.py ``Script``, packed):
-- unpacked once here, it shadows the global, so every ARGV[i] below reads that layout (numbers
-- where the script calls tonumber, strings where it compares or concatenates them).
local ARGV = cmsgpack.unpack(ARGV[1])
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
-- The client sends each entry's prefix (rules.member), index bucket and index value, and each
-- record's event-id bucket, computed once in Python by the functions the model and the fold
-- use: the script computes none of them (a moderation target's bucket and refolded prefixes
-- excepted).
local W = 18
-- ARGV per entry: index, participant, score, operator, metadata, prefix, bucket, index value.
local EW = 8

local function fmt(x) return string.format('%.0f', x) end

-- HSET of a flat {field, value, ...} list, in chunks (unpack's stack is bounded), in order.
local function hset_all(key, flat)
  for s = 1, #flat, 2000 do
    redis.call('HSET', key, unpack(flat, s, math.min(s + 1999, #flat)))
  end
end

-- Remembered event ids (rules.dedup_forget): by day of event time, each day in 256 hashes by
-- the first two hex digits of SHA-1 of the stored id (projections/keys.py event_bucket).
local DAY = 86400000
local function ev_day(at) return math.floor(at / DAY) end
-- '<KEYS[3]>:<day>:' per day, built once per call (two look-ups per record use it)
local ev_days = {}
local function ev_key(day, bk)
  local dk = ev_days[day]
  if dk == nil then dk = EV .. ':' .. fmt(day) .. ':'; ev_days[day] = dk end
  return dk .. bk
end

-- A period's participant index is bucketed (projections/keys.py ``index_bucket``): the bucket
-- of a participant is the first 3 hex digits of SHA-1(id), under the same hash tag as P.m
-- (the stem of the bucket names), and it stores only the member's tie-break prefix. An entry
-- brings its bucket (bk); only moderation targets, rare, have theirs computed here. P.ik
-- remembers the call's bucket key names (a look-up and a placement name the same key).
local function index_key(P, pid, bk)
  if bk == nil then return P.m .. ':' .. string.sub(redis.sha1hex(pid), 1, 3) end
  local k = P.ik[bk]
  if k == nil then k = P.m .. ':' .. bk; P.ik[bk] = k end
  return k
end
-- The index stores each prefix in 14 bytes: pre_text / pre_bin (index_value.lua, prepended).
-- The participant's member (prefix then id), or nil.
local function index_get(P, pid, bk)
  local pre = redis.call('HGET', index_key(P, pid, bk), pid)
  if pre then return pre_text(pre) .. pid end
  return nil
end
-- iv: mem's prefix as the index stores it, when the client sent it (an entry's own member)
local function index_set(P, pid, mem, bk, iv)
  redis.call('HSET', index_key(P, pid, bk), pid, iv or pre_bin(mem))
end
local function index_del(P, pid, bk) redis.call('HDEL', index_key(P, pid, bk), pid) end

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
-- cs / cm: the participants this call looked up or placed in the period (lookup below).
local function read_periods(a, kp)
  local periods = {}
  for i = 1, tonumber(ARGV[a]) do
    local k = 6 + (i - 1) * kp
    periods[i] = {name = ARGV[a + 2 * i - 1], closes = tonumber(ARGV[a + 2 * i]),
      z = KEYS[k + 1], m = KEYS[k + 2], all = kp > 2 and KEYS[k + 3] or nil, cs = {}, cm = {},
      ik = {}}
  end
  return periods, a + 1 + 2 * #periods
end

-- A participant's score and member in period P (nil, nil: none), read from Redis once per
-- call: P.cs (score, false = none) and P.cm (member) remember it, and every placement updates
-- them (remember), so a participant met again in the call (a match's range check, then its
-- apply; a later record) costs no look-up. A moderation, which moves participants by other
-- paths, forgets them all (forget_lookups).
local function lookup(board, P, pid, bk)
  local s = P.cs[pid]
  if s == nil then
    local m
    s, m = board.lookup(P, pid, bk)
    P.cs[pid] = s or false; P.cm[pid] = m
    return s, m
  end
  if s == false then return nil, nil end
  return s, P.cm[pid]
end
local function remember(P, pid, score, mem) P.cs[pid] = score; P.cm[pid] = mem end
local function forget_lookups(periods)
  for _, P in ipairs(periods) do P.cs = {}; P.cm = {} end
end

-- Why the record's entries cannot all apply (a score that would leave the exact range, in
-- entry order, as the entries would apply one after the other), or nil: a match applies whole
-- or not at all, so this runs before anything of the record is changed.
local function refuse_entries(board, P, rec)
  -- best and set keep a score inside the range (every submitted score is): only incr and decr
  -- can leave it, so a match without them needs no look-up
  local arith = false
  for e = 0, rec.ne - 1 do
    local op = ARGV[rec.estart + e * EW + 3]
    if op == 'incr' or op == 'decr' then arith = true; break end
  end
  if not arith then return nil end
  local sim = {}
  for e = 0, rec.ne - 1 do
    local b = rec.estart + e * EW
    local pid = ARGV[b + 1]
    local olds = sim[pid]
    if olds == nil then olds = lookup(board, P, pid, ARGV[b + 6]) end
    local new = next_score(olds, ARGV[b + 3], tonumber(ARGV[b + 2]))
    if new > MAX or new < -MAX then
      return 'entries[' .. ARGV[b] .. ']: score ' .. fmt(new) ..
        ' would leave the exact range |score| < 2^53'
    end
    sim[pid] = new
  end
  return nil
end

-- Change rows are refilled in place like the notice rows (apply.lua): a record's rows are
-- packed before the next record's are written.
local crows = {}

-- Apply one record's valid entries (ARGV[estart ..]) to period P; returns the new version.
local function apply_entries(board, P, rec, ver, changes, notices)
  for e = 0, rec.ne - 1 do
    local b = rec.estart + e * EW
    local idx = tonumber(ARGV[b]); local pid = ARGV[b + 1]; local sub = tonumber(ARGV[b + 2])
    local op = ARGV[b + 3]; local meta = ARGV[b + 4]; local bk = ARGV[b + 6]
    local olds, oldm = lookup(board, P, pid, bk)
    local new = next_score(olds, op, sub)
    local mem, iv = oldm, nil
    local moved = olds == nil or new ~= olds
    if moved then mem = ARGV[b + 5] .. pid; iv = ARGV[b + 7] end
    local oldr, newr, zbefore, zafter = board.place(P, pid, olds, oldm, new, mem, moved, bk, iv)
    remember(P, pid, new, mem)
    if meta ~= '' then redis.call('HSET', PM, pid, meta) end
    ver = ver + 1
    local n = #changes + 1
    local row = crows[n]
    if row == nil then row = {}; crows[n] = row end
    row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11],
      row[12] = idx, P.name, pid, oldr or false, newr or false, olds or false, new, ver, op, sub,
      zbefore, zafter
    changes[n] = row
    board.notify(P, pid, oldr, newr, ver, notices)
  end
  return ver
end

-- The keys of one period named by the key base (a void's period is known only in Redis).
local function period_keys(kb, name)
  return {name = name, z = kb .. 'z:' .. name, m = kb .. 'm:' .. name}
end

-- Score and prefix of a participant refolded from its retained rows (rules.refold), or nil.
local function refold(rows)
  local score, prefix = nil, ''
  for _, row in ipairs(rows) do
    local new = next_score(score, row.op, row.sub)
    if score == nil or new ~= score then prefix = row.pre end
    score = new
  end
  return score, prefix
end

local function split_rows(text)
  local rows = {}
  if not text then return rows end
  for line in string.gmatch(text, '[^\n]+') do
    local pre, op, sub = string.match(line, '^(.-)\t(.-)\t(.-)$')
    rows[#rows + 1] = {pre = pre, op = op, sub = tonumber(sub), line = line}
  end
  return rows
end

-- Why a match cannot apply by the board's bans and tournament limits (rules.banned_reason,
-- rules.limit_reason), or nil; counts its attempts when it can. Runs after every other check.
local function refuse_limits(rec, P, lim)
  -- the board's bans: one EXISTS per call while it has none (a ban in this call sets it)
  if lim.bans == nil then lim.bans = redis.call('EXISTS', lim.bn) == 1 end
  for e = 0, rec.ne - 1 do
    local pid = ARGV[rec.estart + e * EW + 1]
    if lim.bans and redis.call('HEXISTS', lim.bn, pid) == 1 then
      return 'banned: participant ' .. pid .. ' is banned from this board'
    end
  end
  if lim.attempts == -1 and lim.participants == -1 then return nil end
  local at = lim.kb .. 'at:' .. P.name
  local admitted = redis.call('HLEN', at)
  local seen, order = {}, {}
  for e = 0, rec.ne - 1 do
    local pid = ARGV[rec.estart + e * EW + 1]
    if not seen[pid] then
      seen[pid] = true
      order[#order + 1] = pid
      local used = tonumber(redis.call('HGET', at, pid) or '0')
      if lim.attempts ~= -1 and used >= lim.attempts then
        return 'max_attempts: participant ' .. pid .. ' has used its ' .. lim.attempts ..
          ' attempts of period ' .. P.name
      end
      if used == 0 then
        if lim.participants ~= -1 and admitted >= lim.participants then
          return 'max_participants: period ' .. P.name .. ' is full (' .. lim.participants ..
            ' participants); ' .. pid .. ' is not admitted'
        end
        admitted = admitted + 1
      end
    end
  end
  for _, pid in ipairs(order) do redis.call('HINCRBY', at, pid, 1) end
  return nil
end

-- Take a participant off period Q: returns its old rank and score (nil if absent).
local function take_off(Q, pid)
  local oldm = index_get(Q, pid)
  if not oldm then return nil, nil end
  local oldr = redis.call('ZRANK', Q.z, oldm) + 1
  local olds = zscore(tonumber(redis.call('ZSCORE', Q.z, oldm)))
  redis.call('ZREM', Q.z, oldm)
  index_del(Q, pid)
  return oldr, olds
end

-- Apply one moderation record (rec.action on rec.target); returns the new version and the
-- refusal (or false). Rows: {index, period, pid, old_rank, new_rank, old_score, new_score,
-- version, action, 0}; a participant that leaves the standings has new_rank false, score 0.
local function moderate(rec, P, ver, changes, lim)
  local act, target = rec.action, rec.target
  if act == 'participant_banned' then
    redis.call('HSET', lim.bn, target, rec.event_id)
    lim.bans = true
    return ver, false
  elseif act == 'participant_unbanned' then
    redis.call('HDEL', lim.bn, target)
    return ver, false
  elseif act == 'participant_removed' then
    local Q = period_keys(lim.kb, P.name)
    local oldr, olds = take_off(Q, target)
    if oldr == nil then
      return ver, 'participant ' .. target .. ' has no record in period ' .. P.name
    end
    redis.call('HDEL', lim.kb .. 'h:' .. P.name, target)
    ver = ver + 1
    changes[#changes + 1] = {0, P.name, target, oldr, false, olds, 0, ver, act, 0}
    return ver, false
  end
  -- match_voided: refold each participant of the match from its retained rows without them
  local idx = redis.call('HGET', lim.mx, target)
  if not idx then
    return ver, 'match ' .. target .. ' is not applied on this board (unknown, refused or already voided)'
  end
  local lines = {}
  for line in string.gmatch(idx, '[^\n]+') do lines[#lines + 1] = line end
  local name = lines[1]
  if redis.call('HEXISTS', PE, name) == 1 then
    return ver, 'period ' .. name .. ' is closed: its final standings stay as they are'
  end
  local Q = period_keys(lim.kb, name)
  local H = lim.kb .. 'h:' .. name
  local drop, order = {}, {}
  for i = 2, #lines do
    local pid = string.sub(lines[i], W + 1)
    if drop[pid] == nil then drop[pid] = {}; order[#order + 1] = pid end
    drop[pid][string.sub(lines[i], 1, W)] = true
  end
  for i, pid in ipairs(order) do
    local keep, text = {}, {}
    for _, row in ipairs(split_rows(redis.call('HGET', H, pid))) do
      if not drop[pid][row.pre] then keep[#keep + 1] = row; text[#text + 1] = row.line end
    end
    local oldm = index_get(Q, pid)
    local oldr, olds = nil, nil
    if oldm then
      oldr = redis.call('ZRANK', Q.z, oldm) + 1
      olds = zscore(tonumber(redis.call('ZSCORE', Q.z, oldm)))
    end
    local new, pre = refold(keep)
    local newr = false
    if new == nil then
      if oldm then redis.call('ZREM', Q.z, oldm); index_del(Q, pid) end
      redis.call('HDEL', H, pid)
      new = 0
    else
      local mem = pre .. pid
      if mem ~= oldm or new ~= olds then
        if oldm then redis.call('ZREM', Q.z, oldm) end
        redis.call('ZADD', Q.z, zscore(new), mem)
        index_set(Q, pid, mem)
      end
      newr = redis.call('ZRANK', Q.z, mem) + 1
      redis.call('HSET', H, pid, table.concat(text, '\n'))
    end
    if oldm or newr then
      ver = ver + 1
      changes[#changes + 1] = {i - 1, name, pid, oldr or false, newr, olds or false, new, ver, act, 0}
    end
  end
  redis.call('HDEL', lim.mx, target)
  return ver, false
end

-- Keep the applied entries of a match (retain_entries): a line per entry in the participant's
-- rows of the period, and the match's period and members under its event id.
local function retain(rec, P, event_id, lim)
  local H = lim.kb .. 'h:' .. P.name
  local idx = {P.name}
  for e = 0, rec.ne - 1 do
    local b = rec.estart + e * EW
    local pid = ARGV[b + 1]
    local pre = ARGV[b + 5]
    local line = pre .. '\t' .. ARGV[b + 3] .. '\t' .. ARGV[b + 2]
    local old = redis.call('HGET', H, pid)
    if old then line = old .. '\n' .. line end
    redis.call('HSET', H, pid, line)
    idx[#idx + 1] = pre .. pid
  end
  redis.call('HSET', lim.mx, event_id, table.concat(idx, '\n'))
end

local function apply_batch(board)
  board.init(tonumber(ARGV[3]), tonumber(ARGV[4]))
  local window, cap, cut = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local kb = ARGV[11]
  local lim = {attempts = tonumber(ARGV[8]), participants = tonumber(ARGV[9]),
    retain = ARGV[10] == '1', kb = kb, bn = kb .. 'bn', mx = kb .. 'mx'}
  local periods, a = read_periods(12, board.keys_per_period)
  local nrec = tonumber(ARGV[a]); a = a + 1
  local wmf = 'wm:' .. partition
  local st = redis.call('HMGET', S, wmf, 'ver', 'maxt', 'hz')
  local wm = tonumber(st[1] or '-1')
  local ver = tonumber(st[2] or '0')
  local maxt = tonumber(st[3] or '-1')
  -- the dedup horizon: event ids older than it are forgotten, so records older are refused
  local hz = tonumber(st[4] or '0')
  -- remembered days -> their id counts (written back at the end), and the total
  local days, total, dirty = {}, 0, {}
  local evflat = redis.call('HGETALL', EV)
  for i = 1, #evflat, 2 do
    local n = tonumber(evflat[i + 1])
    days[tonumber(evflat[i])] = n; total = total + n
  end
  -- the ids registered by this call, written at its end (one HSET per bucket): id -> day, and
  -- day -> bucket key -> {id, '', ...} in the order they came
  local new_ids, new_by_day = {}, {}
  -- The remembered ids among this call's records, read before any is checked: one HMGET per
  -- bucket of each remembered day (a hot board's call holds thousands of records in 256
  -- buckets a day). Exact: the call writes its ids only at its end (new_ids has them until
  -- then), and a day the horizon drops (forget) never takes ids again in the call, as every
  -- later record of it is older than the horizon. held: id -> {day -> true}.
  local held = {}
  do
    local by_bucket, b = {}, a
    for _ = 1, nrec do
      local bk = ARGV[b + 3]
      if bk ~= '' then
        local ids = by_bucket[bk]
        if ids == nil then ids = {}; by_bucket[bk] = ids end
        ids[#ids + 1] = ARGV[b + 2]
      end
      b = b + 10 + tonumber(ARGV[b + 9]) * EW
    end
    for day, _ in pairs(days) do
      for bk, ids in pairs(by_bucket) do
        local key = ev_key(day, bk)
        for s = 1, #ids, 2000 do
          local got = redis.call('HMGET', key, unpack(ids, s, math.min(s + 1999, #ids)))
          for i = 1, #got do
            if got[i] then
              local ek = ids[s + i - 1]
              local h = held[ek]
              if h == nil then h = {}; held[ek] = h end
              h[day] = true
            end
          end
        end
      end
    end
  end
  local function seen(ek)
    local d = new_ids[ek]
    if d ~= nil and days[d] ~= nil then return true end
    local h = held[ek]
    if h ~= nil then
      for day, _ in pairs(h) do
        if days[day] ~= nil then return true end
      end
    end
    return false
  end
  -- rules.dedup_forget: the horizon moves to the start of the day `window` before the board's
  -- time, then past the oldest days while more than `cap` ids remain (never past the newest)
  local function forget()
    local start = maxt - window
    local h = start - start % DAY
    if h <= hz and total <= cap then return end
    if h > hz then hz = h end
    local order = {}
    for day, _ in pairs(days) do order[#order + 1] = day end
    table.sort(order)
    local newest = ev_day(maxt)
    for _, day in ipairs(order) do
      if day * DAY < hz then
        -- below the horizon: gone
      elseif total > cap and day < newest then
        hz = (day + 1) * DAY
      else
        break
      end
      total = total - days[day]
      days[day] = nil; dirty[day] = true; new_by_day[day] = nil
      local names = {}
      for b = 0, 255 do names[#names + 1] = ev_key(day, string.format('%02x', b)) end
      redis.call('DEL', unpack(names))
    end
  end
  -- period -> ended (true/false): one HEXISTS per period and call, kept up to date below
  local ended_p = {}
  local function has_ended(name)
    local e = ended_p[name]
    if e == nil then e = redis.call('HEXISTS', PE, name) == 1; ended_p[name] = e end
    return e
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
  local outbox = {}  -- position, packed result, ...: written at the end (few HSETs)
  local newwm = wm
  -- the record being applied (one table, refilled per record), and the empty list that the
  -- results share (never written: rejected is always empty here, ended mostly)
  local rec, none = {}, {}
  for _ = 1, nrec do
    local pos = ARGV[a]
    local offset = tonumber(pos) or tonumber(string.match(pos, '^%-?%d+'))
    local event_id = ARGV[a + 1]; local ek = ARGV[a + 2]; local ebk = ARGV[a + 3]
    local at = tonumber(ARGV[a + 4])
    local P = periods[tonumber(ARGV[a + 5])]; local pre = ARGV[a + 6]
    local action, target = ARGV[a + 7], ARGV[a + 8]
    local ne = tonumber(ARGV[a + 9])
    local estart = a + 10
    a = estart + ne * EW
    if offset <= wm then
      local prev = redis.call('HGET', OB, pos)
      if prev then out[#out + 1] = prev end
    else
      newwm = offset
      local changes, notices, refused, ended = {}, {}, false, none
      rec.ne, rec.estart, rec.at, rec.offset = ne, estart, at, offset
      rec.event_id, rec.action, rec.target = event_id, action, target
      local mark = event_id == ''
      local moderation = action ~= ''
      -- a mark opens a period that has standings but could not end when it opened (an
      -- all-time board closed since), so that it can end now
      if mark and P.closes ~= -1 and open[P.name] == nil
          and not has_ended(P.name) and redis.call('EXISTS', P.z) == 1 then
        open[P.name] = P.closes; names[#names + 1] = P.name
        redis.call('HSET', PO, P.name, fmt(P.closes))
      end
      -- late: the period ended, or would have ended had it been opened (the board's time is
      -- past its end plus the grace)
      if mark then
        refused = false
      elseif (not moderation or action == 'participant_removed')
          and ((P.closes ~= -1 and maxt >= P.closes) or has_ended(P.name)) then
        -- (a ban or a void is about no period of its own time)
        refused = 'period ' .. P.name .. ' is closed: late event'
      elseif at < hz then
        refused = 'event time is older than the deduplication horizon ' .. fmt(hz) ..
          ': a duplicate of it could no longer be detected'
      elseif seen(ek) then
        refused = 'duplicate event id ' .. event_id
      elseif moderation then
        ver, refused = moderate(rec, P, ver, changes, lim)
        forget_lookups(periods)
      else
        -- a refusal decided before the script (invalid entries, a hash-sharded overflow), else
        -- this script's own check: either way the match applies whole or not at all; then the
        -- board's bans and tournament limits
        if pre ~= '' then refused = pre else refused = refuse_entries(board, P, rec) or false end
        if not refused then refused = refuse_limits(rec, P, lim) or false end
      end
      if not refused then
        if not mark then
          local day = ev_day(at)
          local pend = new_by_day[day]
          if pend == nil then pend = {}; new_by_day[day] = pend end
          local key = ev_key(day, ebk)
          local fields = pend[key]
          if fields == nil then fields = {}; pend[key] = fields end
          fields[#fields + 1] = ek; fields[#fields + 1] = ''
          new_ids[ek] = day
          days[day] = (days[day] or 0) + 1; total = total + 1; dirty[day] = true
        end
        if mark or moderation then
          -- nothing to open: only the time moves (and what the moderation did)
        elseif P.closes ~= -1 and open[P.name] == nil then
          open[P.name] = P.closes; names[#names + 1] = P.name
          redis.call('HSET', PO, P.name, fmt(P.closes))
        end
        if not mark and not moderation then
          ver = apply_entries(board, P, rec, ver, changes, notices)
          if lim.retain then retain(rec, P, event_id, lim) end
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
              ended_p[name] = true
              if ended == none then ended = {} end
              ended[#ended + 1] = {name, ver}
            elseif open[name] ~= nil then
              keep[#keep + 1] = name
            end
          end
          names = keep
          forget()
        elseif total > cap then
          forget()
        end
      end
      local res = {offset, changes, notices, none, refused, ended, pos}
      local packed = cmsgpack.pack(res)
      outbox[#outbox + 1] = pos; outbox[#outbox + 1] = packed
      out[#out + 1] = packed
    end
  end
  hset_all(OB, outbox)
  for _, pend in pairs(new_by_day) do
    for key, fields in pairs(pend) do hset_all(key, fields) end
  end
  redis.call('HSET', S, wmf, fmt(newwm), 'ver', fmt(ver), 'maxt', fmt(maxt), 'hz', fmt(hz))
  for day, _ in pairs(dirty) do
    if days[day] then redis.call('HSET', EV, fmt(day), fmt(days[day]))
    else redis.call('HDEL', EV, fmt(day)) end
  end
  return out
end
