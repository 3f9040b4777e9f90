-- How the participant index stores a member's tie-break prefix, prepended to the scripts that
-- read or write the index (rules.lua and its boards, projections/push.py).
-- The index stores a prefix's 18 base-64 digits (rules.TIEBREAK_DIGITS) as their 108 bits and
-- 4 zero bits in 14 bytes (projections/keys.py index_value): 3 bytes per 4 digits.
local DIGITS = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz'
local DIG, VAL = {}, {}
for i = 1, 64 do
  local c = string.byte(DIGITS, i)
  DIG[i - 1] = c; VAL[c] = i - 1
end
local floor, byte, char = math.floor, string.byte, string.char
local function pre_text(b)
  local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14 = byte(b, 1, 14)
  local u = a1 * 65536 + a2 * 256 + a3
  local v = a4 * 65536 + a5 * 256 + a6
  local x = a7 * 65536 + a8 * 256 + a9
  local y = a10 * 65536 + a11 * 256 + a12
  local z = a13 * 256 + a14
  return char(DIG[floor(u / 262144)], DIG[floor(u / 4096) % 64], DIG[floor(u / 64) % 64], DIG[u % 64],
    DIG[floor(v / 262144)], DIG[floor(v / 4096) % 64], DIG[floor(v / 64) % 64], DIG[v % 64],
    DIG[floor(x / 262144)], DIG[floor(x / 4096) % 64], DIG[floor(x / 64) % 64], DIG[x % 64],
    DIG[floor(y / 262144)], DIG[floor(y / 4096) % 64], DIG[floor(y / 64) % 64], DIG[y % 64],
    DIG[floor(z / 1024)], DIG[floor(z / 16) % 64])
end
local function pre_bin(t)
  local c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18 =
    byte(t, 1, 18)
  local u = VAL[c1] * 262144 + VAL[c2] * 4096 + VAL[c3] * 64 + VAL[c4]
  local v = VAL[c5] * 262144 + VAL[c6] * 4096 + VAL[c7] * 64 + VAL[c8]
  local x = VAL[c9] * 262144 + VAL[c10] * 4096 + VAL[c11] * 64 + VAL[c12]
  local y = VAL[c13] * 262144 + VAL[c14] * 4096 + VAL[c15] * 64 + VAL[c16]
  local z = VAL[c17] * 1024 + VAL[c18] * 16
  return char(floor(u / 65536), floor(u / 256) % 256, u % 256,
    floor(v / 65536), floor(v / 256) % 256, v % 256,
    floor(x / 65536), floor(x / 256) % 256, x % 256,
    floor(y / 65536), floor(y / 256) % 256, y % 256,
    floor(z / 256), z % 256)
end
