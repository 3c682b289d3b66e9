-- shardrun._host: the runtime's side of each shard's Lua state. Internal:
-- processors never require it. The C host calls these functions; they turn a
-- batch in C memory into the `records` a processor sees, call the processor,
-- and reduce its return value to a decision the C host can check.
local ffi = require "ffi"

local ok_new, table_new = pcall(require, "table.new")
if not ok_new then table_new = function() return {} end end

ffi.cdef [[
typedef struct shardrun_record {
  uint64_t data_off, pkey_off, seq_off;
  uint32_t data_len, pkey_len, seq_len, reserved;
  int64_t sub_seq, arrival_ms;
} shardrun_record_t;
]]

local rec_ptr_t = ffi.typeof("const shardrun_record_t *")
local char_ptr_t = ffi.typeof("const char *")
local ffi_string, rawget, rawset, setmetatable = ffi.string, rawget, rawset, setmetatable
local tostring, type, error = tostring, type, error

local host = {}

-- A record is a small table {_h = batch handle, _i = index}; its fields are
-- read from the batch only when the script asks for them, then cached.
local getters = {
  data = function(r, a) return ffi_string(a + r.data_off, r.data_len) end,
  partitionKey = function(r, a) return ffi_string(a + r.pkey_off, r.pkey_len) end,
  sequenceNumber = function(r, a) return ffi_string(a + r.seq_off, r.seq_len) end,
  subSequenceNumber = function(r) return tonumber(r.sub_seq) end,
  approximateArrivalTimestamp = function(r) return tonumber(r.arrival_ms) end,
}

local record_mt = {}
record_mt.__index = function(t, k)
  local get = getters[k]
  if not get then return nil end
  local h = rawget(t, "_h")
  if not h.live then
    error("record " .. tostring(rawget(t, "_i")) .. " of an earlier batch was used after that batch ended;"
      .. " copy the fields you need (e.g. local d = r.data) inside processRecords", 2)
  end
  local v = get(h.recs[rawget(t, "_i") - 1], h.arena)
  rawset(t, k, v)
  return v
end
record_mt.__tostring = function(t)
  return "record(" .. tostring(t.sequenceNumber) .. ")"
end
host.record_mt = record_mt

-- Builds the records table of a batch. recs/arena are lightuserdata from C.
function host.records(recs, arena, n)
  local h = { recs = ffi.cast(rec_ptr_t, recs), arena = ffi.cast(char_ptr_t, arena), live = true }
  local records = table_new(n, 0)
  for i = 1, n do
    records[i] = setmetatable({ _h = h, _i = i }, record_mt)
  end
  return records, h
end

-- Reduces a reference to a record (one of this batch's records, a record-like
-- table, or a sequence number string) to (index) or (nil, seq, sub).
local function ref(v, h, what)
  if type(v) == "table" then
    local i = rawget(v, "_i")
    if i and rawget(v, "_h") == h then return i end
    local seq = v.sequenceNumber
    if type(seq) == "string" then return nil, seq, tonumber(v.subSequenceNumber) or 0 end
    error(what .. " must be a record of this batch or a sequence number string", 0)
  elseif type(v) == "string" then
    return nil, v, nil
  elseif type(v) == "number" then
    error(what .. " must be a sequence number string, not a number (sequence numbers exceed a double's"
      .. " precision): got " .. tostring(v), 0)
  end
  error(what .. " must be a record or a sequence number string, got a " .. type(v), 0)
end

-- Returns kind, index, seq, sub, message.
-- kind: "none" | "all" | "at" | "failed" | "error"
local function classify(ret, h)
  local t = type(ret)
  if ret == nil then return "none" end
  if t == "string" then
    if ret == "checkpoint" then return "all" end
    return "at", nil, ret, nil
  end
  if t == "table" then
    if ret.failed ~= nil then
      local i, seq, sub = ref(ret.failed, h, "failed")
      local msg = ret.error ~= nil and tostring(ret.error) or "record reported as failed"
      return "failed", i, seq, sub, msg
    end
    if ret.checkpoint ~= nil then
      local i, seq, sub = ref(ret.checkpoint, h, "checkpoint")
      return "at", i, seq, sub
    end
    if rawget(ret, "_i") then
      local i, seq, sub = ref(ret, h, "checkpoint")
      return "at", i, seq, sub
    end
    error("invalid decision: a table needs checkpoint = record or failed = record", 0)
  end
  error("invalid decision: expected nil, \"checkpoint\", a sequence number, {checkpoint = record} or"
    .. " {failed = record, error = ...}, got a " .. t .. (t == "number" and (" " .. tostring(ret)) or ""), 0)
end

local traceback = debug.traceback

-- The traceback up to the processor's own frames: the runtime's frames
-- (xpcall, this file) say nothing to the user.
local function handler(e)
  local tb = traceback("", 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  return { msg = tostring(e), tb = tb }
end

local function fail(e)
  if type(e) == "table" and e.msg then return "error", nil, nil, nil, e.msg, e.tb end
  return "error", nil, nil, nil, tostring(e), ""
end

-- Calls processRecords; returns kind, index, seq, sub, message, traceback.
function host.process(P, recs, arena, n, shard)
  local records, h = host.records(recs, arena, n)
  local ok, ret = xpcall(P.processRecords, handler, records, shard)
  h.live = false
  if not ok then return fail(ret) end
  local ok2, kind, i, seq, sub, msg = pcall(classify, ret, h)
  if not ok2 then return "error", nil, nil, nil, tostring(kind), "" end
  return kind, i, seq, sub, msg
end

-- Calls a lifecycle function if the script has it; returns kind ("none" or
-- "all" for a "checkpoint" return), or "error" with message and traceback.
function host.lifecycle(P, name, shard)
  local f = P[name]
  if f == nil then return "none" end
  local ok, ret = xpcall(f, handler, shard)
  if not ok then return fail(ret) end
  if ret == "checkpoint" then return "all" end
  if ret == nil then return "none" end
  return "error", nil, nil, nil, name .. " must return \"checkpoint\" or nothing, got " .. tostring(ret), ""
end

-- Validates what a script returned when loaded.
function host.check(P, path)
  if type(P) ~= "table" then
    error(path .. ": the script must return a table of functions (return P), got a " .. type(P), 0)
  end
  if type(P.processRecords) ~= "function" then
    error(path .. ": the script has no processRecords function", 0)
  end
  for _, name in ipairs { "initialize", "shardEnded", "leaseLost", "shutdownRequested", "migrate" } do
    if P[name] ~= nil and type(P[name]) ~= "function" then
      error(path .. ": " .. name .. " must be a function, got a " .. type(P[name]), 0)
    end
  end
  return true
end

return host
