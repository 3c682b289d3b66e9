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
local tostring, type, error, getmetatable = tostring, type, error, getmetatable

local host = {}

-- Which batch is live in this state: C memory (an int32 the C host sets to
-- the batch's generation before calling processRecords and to 0 after,
-- however the call ends: return, error, timeout, memory cap). A record
-- checks it before reading the batch, so a record kept past its batch can
-- never read freed memory. Liveness is C's: no Lua line has to run for it.
local live = ffi.new("int32_t[1]") -- until host.bind gives the C host's cell

-- shard.emit's way into C: a function of the C host (processor.c,
-- proc_emit) that copies the record into the running job's buffer, and its
-- context. nil under shardrun.testing, which gives emitter a sink of its own.
local emit_fn, emit_ctx
local emit_fn_t = ffi.typeof("int (*)(void *, uint32_t, const char *, size_t, const char *, size_t, const char *,"
  .. " size_t)")

-- cell: lightuserdata (the C host's int32) or an int32_t[1] cdata (tests).
-- fn, ctx: the C host's emit function and its context (lightuserdata), or nil.
function host.bind(cell, fn, ctx)
  live = ffi.cast("int32_t *", cell)
  if fn ~= nil then
    -- cdata, not lightuserdata: the JIT compiles calls with cdata arguments
    emit_fn, emit_ctx = ffi.cast(emit_fn_t, fn), ffi.cast("void *", ctx)
  end
end

-- A record is a small table {batch handle, index} (in its array part: one
-- allocation, the cheapest table there is, as a batch makes one per record);
-- its fields are read from the batch only when the script asks for them, then
-- cached. Records are told from other tables by their metatable.
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
  local h = rawget(t, 1)
  if h.gen ~= live[0] then
    error("record " .. tostring(rawget(t, 2)) .. " of an earlier batch was used after that batch ended;"
      .. " copy the fields you need (e.g. local d = r.data) inside processRecords", 2)
  end
  local v = get(h.recs[rawget(t, 2) - 1], h.arena)
  rawset(t, k, v)
  return v
end
record_mt.__tostring = function(t)
  return "record(" .. tostring(t.sequenceNumber) .. ")"
end
host.record_mt = record_mt

-- The loop that makes a batch's records, twice: compiling it costs a state
-- about as much as the interpreter spends on a few thousand records, so the
-- interpreter builds a state's first host.fill_jit_after records and the
-- compiled copy the rest. A state that lives for one small batch (many
-- shards, little traffic each) never pays for the compilation; a long-lived
-- one pays it once. (A field, so a spec can send batches down either path.)
host.fill_jit_after = 4096
local filled = 0 -- records this state has made so far

local function fill_compiled(records, h, n)
  for i = 1, n do
    records[i] = setmetatable({ h, i }, record_mt)
  end
end

local function fill_interpreted(records, h, n)
  for i = 1, n do
    records[i] = setmetatable({ h, i }, record_mt)
  end
end
jit.off(fill_interpreted)

-- Builds the records table of a batch. recs/arena are lightuserdata (or
-- cdata) from C; gen is the generation the C host made live for it.
function host.records(recs, arena, n, gen)
  local h = { recs = ffi.cast(rec_ptr_t, recs), arena = ffi.cast(char_ptr_t, arena), gen = gen }
  local records = table_new(n, 0)
  if filled < host.fill_jit_after then fill_interpreted(records, h, n) else fill_compiled(records, h, n) end
  filled = filled + n
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
    if getmetatable(v) == record_mt and rawget(v, 1) == h then return rawget(v, 2) end
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
    if getmetatable(ret) == record_mt then return "at", resolve(ret, h, records, "checkpoint") end
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

-- ---- shard.emit --------------------------------------------------------------

local MAX_RECORD = 1024 * 1024 -- Kinesis's record limit (and the local stream's)
local MAX_HASH_KEY = "340282366920938463463374607431768211455" -- 2^128 - 1

local function describe(v)
  if type(v) == "string" then return string.format("%q", #v > 60 and (v:sub(1, 60) .. "...") or v) end
  return "a " .. type(v)
end

local function hash_key_ok(hk)
  if type(hk) ~= "string" or not hk:match("^%d+$") or #hk > #MAX_HASH_KEY then return false end
  return #hk < #MAX_HASH_KEY or hk <= MAX_HASH_KEY
end

-- Returns shard.emit: checks its arguments the same way under the runtime
-- and under shardrun.testing, then hands the record to sink(index, name,
-- data, partitionKey, explicitHashKey) (index: 0-based place of the output
-- in `outputs`). outputs: the configured output names, or nil to accept any
-- name (shardrun.testing without outputs). sink returns nil, or a message
-- to raise.
function host.emitter(outputs, sink)
  local index
  if outputs then
    index = {}
    for i, name in ipairs(outputs) do index[name] = i - 1 end
  end
  return function(output, data, pkey, hk)
    local o
    if index then
      o = index[output]
      if o == nil then
        if #outputs == 0 then
          error("shard.emit: no outputs configured (add outputs = { " .. tostring(output)
            .. " = { stream = \"...\" } } to the config)", 2)
        end
        error("shard.emit: no output named " .. describe(output) .. " (outputs: " .. table.concat(outputs, ", ")
          .. ")", 2)
      end
    elseif type(output) ~= "string" then
      error("shard.emit: the output must be a name (a string), got " .. describe(output), 2)
    end
    if type(data) ~= "string" then error("shard.emit: data must be a string, got " .. describe(data), 2) end
    if #data > MAX_RECORD then
      error("shard.emit: data of " .. #data .. " bytes is over the 1 MiB record limit", 2)
    end
    if type(pkey) ~= "string" or #pkey == 0 or #pkey > 256 or pkey:find("\0", 1, true) then
      error("shard.emit: partitionKey must be a string of 1 to 256 bytes without NUL, got " .. describe(pkey), 2)
    end
    if hk ~= nil and not hash_key_ok(hk) then
      error("shard.emit: explicitHashKey must be a decimal string from 0 to 2^128 - 1, got " .. describe(hk), 2)
    end
    local why = sink(o, output, data, pkey, hk)
    if why then error(why, 2) end
  end
end

-- The C host's sink: the FFI call copies the strings at once.
local function c_sink(limit_mb)
  return function(o, _, data, pkey, hk)
    local rc = emit_fn(emit_ctx, o, data, #data, pkey, #pkey, hk, hk and #hk or 0)
    if rc == 0 then return nil end
    if rc == -1 then
      return string.format("shard.emit: this call emitted more than max_emit_buffer_mb (%g MB); emit less per call"
        .. " (a lower max_records) or raise max_emit_buffer_mb", limit_mb)
    end
    if rc == -2 then
      return "shard.emit: not available in leaseLost (the lease is gone: nothing emitted now could be acknowledged"
        .. " before a checkpoint)"
    end
    return "shard.emit: refused by the runtime (" .. tostring(rc) .. ")"
  end
end

-- Called by the C host once per state: shard.emit for its shard table.
function host.attach_emit(shard, outputs, limit_mb)
  shard.emit = host.emitter(outputs, c_sink(limit_mb))
end

-- The check state's shard.emit (a script's initialize is tried before it
-- runs): arguments checked, nothing kept.
function host.attach_check_emit(shard)
  shard.emit = host.emitter(nil, function() end)
end

-- Calls processRecords on a batch the C host made live as generation `gen`;
-- returns kind, index, message, traceback (kind "error": raised; "invalid":
-- the return value is not a decision).
function host.process(P, recs, arena, n, shard, gen)
  local records, h = host.records(recs, arena, n, gen)
  local ok, ret = xpcall(P.processRecords, handler, records, shard)
  if not ok then return fail(ret) end
  local ok2, kind, i, msg = pcall(classify, ret, h, records)
  if not ok2 then return "invalid", nil, tostring(kind), "" end
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

-- Reduces what onTimer returned to kind [, sub, seq]: "none", "all" (up to
-- the last record processed), or "at" a position named by a sequence number
-- string (sub-record 0 of it) or a record-like table (a record read in its
-- batch, record.copy(r), or {sequenceNumber = s, subSequenceNumber = n}),
-- alone or as {checkpoint = ...}. Whether the shard has processed it is the
-- C host's check.
local function classify_timer(ret)
  local t = type(ret)
  if ret == nil then return "none" end
  if ret == "checkpoint" then return "all" end
  if t == "string" then
    if not ret:match("^%d+$") then
      error("invalid decision: onTimer must return nil, \"checkpoint\" or a position, got " .. describe(ret), 0)
    end
    return "at", 0, ret
  end
  if t == "table" then
    local v = ret.checkpoint ~= nil and ret.checkpoint or ret
    if type(v) == "string" then return classify_timer(v) end
    local seq = type(v) == "table" and v.sequenceNumber
    if type(seq) ~= "string" or not seq:match("^%d+$") then
      error("invalid decision: onTimer's position needs a sequenceNumber string, got " .. describe(seq), 0)
    end
    return "at", tonumber(v.subSequenceNumber) or 0, seq
  end
  error("invalid decision: onTimer must return nil, \"checkpoint\", a sequence number string or a record-like"
    .. " table, got a " .. t .. (t == "number" and (" " .. tostring(ret)) or ""), 0)
end

-- Calls onTimer(shard, now_ms) if the script has it; returns kind, sub, seq
-- (kind "at"), or "error", nil, message, traceback.
function host.timer(P, shard, now_ms)
  local f = P.onTimer
  if f == nil then return "none" end
  local ok, ret = xpcall(f, handler, shard, now_ms)
  if not ok then return fail(ret) end
  local ok2, kind, sub, seq = pcall(classify_timer, ret)
  if not ok2 then return "error", nil, tostring(kind), "" end
  return kind, sub, seq
end

-- Validates what a script returned when loaded.
function host.check(P, path)
  if type(P) ~= "table" then
    error(path .. ": the script must return a table of functions (return P), got a " .. type(P), 0)
  end
  if type(P.processRecords) ~= "function" then
    error(path .. ": the script has no processRecords function", 0)
  end
  for _, name in ipairs { "initialize", "shardEnded", "leaseLost", "shutdownRequested", "migrate", "onTimer" } do
    if P[name] ~= nil and type(P[name]) ~= "function" then
      error(path .. ": " .. name .. " must be a function, got a " .. type(P[name]), 0)
    end
  end
  return true
end

return host
