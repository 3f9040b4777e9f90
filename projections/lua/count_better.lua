-- Count, for each (key, member) pair, the entries of one sorted set that rank strictly above it.
--
-- KEYS: 1 sorted set. ARGV: npairs x (sorted-set score, member).
-- Entries with a lower score rank above; among equal scores the lexicographically smaller
-- member does (the tie-break prefix). A binary search over the tied run keeps it O(log ties).
-- Returns one count per pair; the member itself need not be in this set.
local z = KEYS[1]
local out = {}
for i = 1, #ARGV, 2 do
  local k, m = ARGV[i], ARGV[i + 1]
  local below = redis.call('ZCOUNT', z, '-inf', '(' .. k)
  local ties = redis.call('ZCOUNT', z, k, k)
  local lo, hi = below, below + ties
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local x = redis.call('ZRANGE', z, mid, mid)[1]
    if x < m then lo = mid + 1 else hi = mid end
  end
  out[#out + 1] = lo
end
return out
