-- Replace every shard of a sharded board (and its board keys) by the rebuilt shadow ones, in
-- one atomic step: readers and the live projector see either the old board or the new one.
--
-- KEYS: n x (live shard state, shadow shard state, shadow shard outbox), then
--       npairs x (shadow key, live key), then the live keys to delete first.
-- ARGV: partition, n, npairs.
-- Swaps only if every shadow shard has applied at least every record any live shard has
-- (each shadow watermark >= the highest live one); returns 1 if swapped, 0 if the shadow
-- must catch up. Runs on a single node only: the shards' keys have different hash tags.
-- Each shadow shard's outbox results at or below that live shard's watermark were published
-- by the live worker already and are dropped; those above it stay, so the live worker
-- publishes them when it reaches those records (its apply finds them below the new watermark).
local wmf = 'wm:' .. ARGV[1]
local n = tonumber(ARGV[2])
local npairs = tonumber(ARGV[3])
local live = {}
local top = -1
for i = 0, n - 1 do
  local lw = tonumber(redis.call('HGET', KEYS[1 + 3 * i], wmf) or '-1')
  live[i] = lw
  if lw > top then top = lw end
end
for i = 0, n - 1 do
  if tonumber(redis.call('HGET', KEYS[2 + 3 * i], wmf) or '-1') < top then return 0 end
end
for i = 0, n - 1 do
  local ob = KEYS[3 + 3 * i]
  for _, off in ipairs(redis.call('HKEYS', ob)) do
    if tonumber(string.match(off, '^%-?%d+')) <= live[i] then redis.call('HDEL', ob, off) end
  end
end
local first = 3 * n + 1
for i = first + 2 * npairs, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 0, npairs - 1 do
  local src, dst = KEYS[first + 2 * i], KEYS[first + 1 + 2 * i]
  if redis.call('EXISTS', src) == 1 then redis.call('RENAME', src, dst) end
end
return 1
