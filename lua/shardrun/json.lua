-- shardrun.json: JSON for processors, over lua-cjson.
--
--   local json = require "shardrun.json"
--   local v = json.decode(r.data)              -- raises on invalid JSON
--   local v, err = json.decode_safe(r.data)    -- nil, "json: ..." instead of raising
--   local s = json.encode({ level = "error", n = 3 })
--   json.is_null(v), json.null, json.encode_safe(v), json.is_utf8(s)
--
-- It uses its own cjson instance (cjson.new()), so its settings never change
-- those of a script that also uses cjson directly. Settings:
--   * strict numbers: NaN, Infinity and hex numbers are invalid JSON here;
--   * numbers are encoded with 14 significant digits (cjson's maximum), so an
--     integer above 10^14 comes out as 1.2345678901235e+15: keep big numbers
--     (ids, sequence numbers) as strings.
--
-- null: a JSON null decodes to json.null, a sentinel (cjson.null) that is
-- TRUTHY in Lua: `if obj.x then` is true for {"x": null}. Test with
-- json.is_null(v) (true for json.null and for nil), or compare `v == json.null`.
-- Encoding json.null gives null; a nil in a table is simply absent
-- (or null inside an array with holes). Because a JSON null never decodes to
-- nil, decode_safe's nil always means an error.
--
-- An empty Lua table encodes as {} (cjson cannot tell an empty array from an
-- empty object). Strings are bytes: encode escapes control characters
-- (including NUL) and passes other bytes through unchanged.
local cjson = require "cjson"

local type, pcall, tostring, error = type, pcall, tostring, error
local byte, find = string.byte, string.find

local codec = cjson.new()
codec.decode_invalid_numbers(false)
codec.encode_invalid_numbers(false)
codec.encode_number_precision(14)

local json = {}

json.null = codec.null

-- Decodes a JSON text; raises an error on invalid input.
function json.decode(s)
  if type(s) ~= "string" then
    error("json.decode: expected a string, got a " .. type(s), 2)
  end
  return codec.decode(s)
end

-- Decodes a JSON text; returns the value, or nil and a message
-- ("json: Expected value but found invalid token at character 1").
function json.decode_safe(s)
  if type(s) ~= "string" then
    return nil, "json: expected a string, got a " .. type(s)
  end
  local ok, v = pcall(codec.decode, s)
  if not ok then return nil, "json: " .. tostring(v) end
  return v
end

-- Encodes a Lua value (table, string, number, boolean, json.null) as
-- compact JSON text; raises on functions, NaN, infinities, very sparse arrays.
function json.encode(v)
  return codec.encode(v)
end

-- Like encode, but returns nil and a message instead of raising.
function json.encode_safe(v)
  local ok, s = pcall(codec.encode, v)
  if not ok then return nil, "json: " .. tostring(s) end
  return s
end

-- True for a decoded JSON null (and for nil, a missing field).
function json.is_null(v)
  return v == nil or v == codec.null
end

-- The second byte's range for each UTF-8 lead byte (RFC 3629: no overlong
-- forms, no surrogates, nothing above U+10FFFF); later bytes are 80..BF.
local function lead(c)
  if c >= 0xC2 and c <= 0xDF then return 2, 0x80, 0xBF end
  if c == 0xE0 then return 3, 0xA0, 0xBF end
  if c == 0xED then return 3, 0x80, 0x9F end
  if c >= 0xE1 and c <= 0xEF then return 3, 0x80, 0xBF end
  if c == 0xF0 then return 4, 0x90, 0xBF end
  if c >= 0xF1 and c <= 0xF3 then return 4, 0x80, 0xBF end
  if c == 0xF4 then return 4, 0x80, 0x8F end
  return nil
end

-- True if s is valid UTF-8. cjson checks neither what it decodes nor what it
-- encodes; JSON text must be UTF-8, so check untrusted input with this.
function json.is_utf8(s)
  if not find(s, "[\128-\255]") then return true end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, lo, hi = lead(c)
      if not len then return false end
      local b = byte(s, i + 1)
      if not b or b < lo or b > hi then return false end
      for j = i + 2, i + len - 1 do
        b = byte(s, j)
        if not b or b < 0x80 or b > 0xBF then return false end
      end
      i = i + len
    end
  end
  return true
end

return json
