-- Replace a board's live keys by its rebuilt shadow keys, atomically.
--
-- KEYS: 1 live state, 2 shadow state, 3 shadow outbox, then npairs x (shadow key, live key),
--       then the live keys to delete first.
-- ARGV: partition, npairs.
-- Swaps only if the shadow has applied at least every record the live board has
-- (shadow watermark >= live watermark); returns 1 if swapped, 0 if the shadow must catch up.
-- Shadow outbox results at or below the live watermark were published by the live worker
-- already and are dropped; those above it stay, so the live worker publishes them when it
-- reaches those records (its apply finds them below the new watermark).
local wmf = 'wm:' .. ARGV[1]
local npairs = tonumber(ARGV[2])
local lw = tonumber(redis.call('HGET', KEYS[1], wmf) or '-1')
local sw = tonumber(redis.call('HGET', KEYS[2], wmf) or '-1')
if sw < lw then return 0 end
local ob = redis.call('HKEYS', KEYS[3])
for _, off in ipairs(ob) do
  if tonumber(string.match(off, '^%-?%d+')) <= lw then redis.call('HDEL', KEYS[3], off) end
end
for i = 4 + 2 * npairs, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 0, npairs - 1 do
  local src, dst = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  if redis.call('EXISTS', src) == 1 then redis.call('RENAME', src, dst) end
end
return 1
