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

-- Which batch is live in this state: C memory (an int32 the C host sets to
-- the batch's generation before calling processRecords and to 0 after,
-- however the call ends: return, error, timeout, memory cap). A record
-- checks it before reading the batch, so a record kept past its batch can
-- never read freed memory. Liveness is C's: no Lua line has to run for it.
local live = ffi.new("int32_t[1]") -- until host.bind gives the C host's cell

-- cell: lightuserdata (the C host's int32) or an int32_t[1] cdata (tests).
function host.bind(cell)
  live = ffi.cast("int32_t *", cell)
end

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
  if h.gen ~= live[0] then
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

-- Builds the records table of a batch. recs/arena are lightuserdata (or
-- cdata) from C; gen is the generation the C host made live for it.
function host.records(recs, arena, n, gen)
  local h = { recs = ffi.cast(rec_ptr_t, recs), arena = ffi.cast(char_ptr_t, arena), gen = gen }
  local records = table_new(n, 0)
  for i = 1, n do
    records[i] = setmetatable({ _h = h, _i = i }, record_mt)
  end
  return records, h
end

-- The index in `records` of the record a decision names, or nil and why.
-- A record of this batch names itself. A sequence number string names
-- sub-record 0 of that sequence number, as the KCL's checkpoint(String):
-- with KPL aggregates, a checkpoint at "seq" never covers the sub-records
-- after the first. A record-like table (e.g. record.copy(r)) names its
-- sequence and sub-sequence number.
local function resolve(v, h, records, what)
  local seq, sub
  if type(v) == "table" then
    local i = rawget(v, "_i")
    if i and rawget(v, "_h") == h then return i end
    seq = v.sequenceNumber
    if type(seq) ~= "string" then
      error(what .. " must be a record of this batch or a sequence number string", 0)
    end
    sub = tonumber(v.subSequenceNumber) or 0
  elseif type(v) == "string" then
    seq, sub = v, 0
  elseif type(v) == "number" then
    error(what .. " must be a sequence number string, not a number (sequence numbers exceed a double's"
      .. " precision): got " .. tostring(v), 0)
  else
    error(what .. " must be a record or a sequence number string, got a " .. type(v), 0)
  end
  local n, named = #records, false
  for i = 1, n do
    local r = records[i]
    if r.sequenceNumber == seq then
      if r.subSequenceNumber == sub then return i end
      named = true
    end
  end
  if named and type(v) == "string" then
    error("invalid decision: sequence number " .. seq .. " names sub-record 0 of a KPL aggregate, which is not in"
      .. " this batch; return the record itself ({checkpoint = r}) to name one of its sub-records", 0)
  end
  error("invalid decision: sequence number " .. seq .. (sub ~= 0 and ("/" .. sub) or "") .. " is not in this batch ("
    .. (n > 0 and ("records " .. records[1].sequenceNumber .. ".." .. records[n].sequenceNumber) or "empty batch")
    .. ")", 0)
end

-- Reduces what processRecords returned to kind, index, message.
-- kind: "none" | "all" | "at" | "failed"; raises on an invalid decision.
local function classify(ret, h, records)
  local t = type(ret)
  if ret == nil then return "none" end
  if t == "string" then
    if ret == "checkpoint" then return "all" end
    return "at", resolve(ret, h, records, "checkpoint")
  end
  if t == "table" then
    if ret.failed ~= nil then
      local msg = ret.error ~= nil and tostring(ret.error) or "record reported as failed"
      return "failed", resolve(ret.failed, h, records, "failed"), msg
    end
    if ret.checkpoint ~= nil then return "at", resolve(ret.checkpoint, h, records, "checkpoint") end
    if rawget(ret, "_i") then return "at", resolve(ret, h, records, "checkpoint") end
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
  if type(e) == "table" and e.msg then return "error", nil, e.msg, e.tb end
  return "error", nil, tostring(e), ""
end

-- Calls processRecords on a batch the C host made live as generation `gen`;
-- returns kind, index, message, traceback (kind "error": raised or invalid).
function host.process(P, recs, arena, n, shard, gen)
  local records, h = host.records(recs, arena, n, gen)
  local ok, ret = xpcall(P.processRecords, handler, records, shard)
  if not ok then return fail(ret) end
  local ok2, kind, i, msg = pcall(classify, ret, h, records)
  if not ok2 then return "error", nil, tostring(kind), "" end
  return kind, i, msg
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
  return "error", nil, name .. " must return \"checkpoint\" or nothing, got " .. tostring(ret), ""
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
