-- Apply one batch of match results of ONE leaderboard: the rules of rules.lua (prepended) on a
-- plain board, whose sorted set holds every participant.
--
-- Board ARGV (3, 4): watch_top_n, overtaken_limit. KEYS per period: sorted set,
-- stem of the participant index (rules.lua index_key). Changes carry global ranks; notifications: overtaken (up to
-- overtaken_limit passed participants, the rest counted in `omitted`; one row per change whose
-- participant field lists the passed members, projections/results.py), entered/left top N.
local watch, olimit
local board = {keys_per_period = 2}
function board.init(top_n, limit) watch, olimit = top_n, limit end

function board.lookup(P, pid, bk)
  local oldm = index_get(P, pid, bk)
  if not oldm then return nil, nil end
  local k = tonumber(redis.call('ZSCORE', P.z, oldm))
  return zscore(k), oldm
end

function board.place(P, pid, _, oldm, new, mem, moved, bk, iv)
  local oldr = nil
  if oldm then oldr = redis.call('ZRANK', P.z, oldm) + 1 end
  if moved then
    if oldm then redis.call('ZREM', P.z, oldm) end
    redis.call('ZADD', P.z, zscore(new), mem)
    index_set(P, pid, mem, bk, iv)
  end
  local newr = oldr
  if mem ~= oldm then newr = redis.call('ZRANK', P.z, mem) + 1 end
  return oldr, newr
end

local sub = string.sub
local function pid_of(member) return sub(member, W + 1) end

-- Notice rows are lists refilled in place: a record's rows are packed (rules.lua) before the
-- next record's are written, so the n-th row of every record is one table of this call.
local rows = {}
local function notice(notices, kind, period, pid, rank, by, v, top_n, omitted)
  local n = #notices + 1
  local row = rows[n]
  if row == nil then row = {}; rows[n] = row end
  row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] =
    kind, period, pid, rank, by, v, top_n, omitted
  notices[n] = row
end

function board.notify(P, pid, oldr, newr, v, notices)
  if oldr and newr < oldr and olimit > 0 then
    -- one row for the participants passed: their members as ZRANGE gives them (prefix then
    -- id) in place of one id, the first one's rank, and the count left out (results.decode
    -- makes it one notice per member)
    local last = math.min(oldr, newr + olimit)
    local passed = redis.call('ZRANGE', P.z, newr, last - 1)
    notice(notices, 'overtaken', P.name, passed, newr + 1, pid, v, 0, (oldr - newr) - #passed)
  end
  if watch > 0 then
    local was = oldr ~= nil and oldr <= watch
    local now = newr <= watch
    if now and not was then
      notice(notices, 'entered_top_n', P.name, pid, newr, false, v, watch, 0)
      local pushed = redis.call('ZRANGE', P.z, watch, watch)
      if pushed[1] then
        notice(notices, 'left_top_n', P.name, pid_of(pushed[1]), watch + 1, pid, v, watch, 0)
      end
    elseif was and not now then
      notice(notices, 'left_top_n', P.name, pid, newr, false, v, watch, 0)
      local pulled = redis.call('ZRANGE', P.z, watch - 1, watch - 1)
      if pulled[1] then
        notice(notices, 'entered_top_n', P.name, pid_of(pulled[1]), watch, false, v, watch, 0)
      end
    end
  end
end

return apply_batch(board)
