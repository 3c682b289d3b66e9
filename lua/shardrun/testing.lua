-- shardrun.testing: unit-test a processor with busted, without a stream.
--
--   local testing = require "shardrun.testing"
--   describe("my processor", function()
--     it("checkpoints every batch", function()
--       local P = testing.load("examples/wordcount/wordcount.lua")  -- a fresh copy
--       local shard = testing.shard { id = "shardId-000000000001" }
--       testing.lifecycle(P, "initialize", shard)
--       local d = testing.process(P, testing.records { "a b", "b", { data = "c", partitionKey = "k" } }, shard)
--       assert.are.equal("checkpoint", d.kind)
--     end)
--   end)
--
-- testing.records(list [, opts]) -> fake records: plain tables with the five
--   record fields. An item is a string (the data) or a table whose missing
--   fields get defaults: partitionKey "key-<n>", sequenceNumber an increasing
--   30-digit decimal string, subSequenceNumber 0, approximateArrivalTimestamp
--   1700000000000 + n. opts.start (default 1) is n for the first record: for a
--   later batch of the same shard pass start = <records so far> + 1.
-- testing.shard(t) -> a shard context {id, stream, position, worker, state = {},
--   emit}. shard.emit checks its arguments as under the runtime (the same
--   code); t.outputs = {"name", ...} are the outputs it accepts, as the
--   config's `outputs` (without: any name). What it emits is kept for
--   testing.emitted; a call that raises emits nothing, as under the runtime.
-- testing.emitted(shard) -> the records emitted since the last look, in emit
--   order, as { output = name, data = ..., partitionKey = ...,
--   explicitHashKey = ... or nil }; the list starts empty again.
-- testing.load(path [, opts]) -> P, the script's table, loaded fresh: a new
--   global environment each time, and modules from the script's folder (and
--   opts.lua_path folders) loaded again for it, as in a new lua_State per shard.
--   Other modules (cjson, shardrun.*) are shared: they keep no state.
--   The script is checked as the runtime checks it (a processRecords function...).
-- testing.process(P, records [, shard]) -> the decision, normalized (records:
--   from testing.records; a list holding strings or incomplete tables is
--   passed through testing.records first; shard defaults to testing.shard()):
--   { kind = "none" }
--   { kind = "checkpoint", index = #records, record = records[#records] }
--   { kind = "at", index = i, record = records[i] }           checkpoint at record i
--   { kind = "failed", index = i, record = records[i], error = "why" }
--   { kind = "error", error = "message", traceback = "..." }   raised or invalid
--   processRecords sees exactly what it sees under the runtime: the records
--   are built in a C-layout batch and handed to the runtime's own Lua side
--   (shardrun._host), so they are lazy views that stop working after the
--   call, and decisions follow the same rules (a sequence number not in the
--   batch, a number instead of a string, a malformed table are errors; a
--   bare sequence number names sub-record 0 of it): the decision is resolved
--   by the same code as under the runtime.
--   record in the result is the item of `records` (the fake record given).
-- testing.lifecycle(P, name [, shard]) -> { kind = "none" | "checkpoint" | "error", error = ... }
--   for initialize, shardEnded, leaseLost, shutdownRequested.
-- testing.timer(P, shard, now_ms) -> onTimer's decision, resolved as under the
--   runtime: { kind = "none" }, { kind = "checkpoint" } (after the last record
--   processed), { kind = "at", sequenceNumber = s, subSequenceNumber = n },
--   or { kind = "error", error = ..., traceback = ... }. (Whether the shard
--   processed that position is the runtime's check.)
local ffi = require "ffi"
local host = require "shardrun._host" -- also declares shardrun_record_t

local type, tostring, error, setmetatable, setfenv = type, tostring, error, setmetatable, setfenv
local format, concat = string.format, table.concat

local rec_array_t = ffi.typeof("shardrun_record_t[?]")
local char_array_t = ffi.typeof("char[?]")

local testing = {}

local SEQ_PREFIX = "49590338271490256608" -- + 10 digits: 30 digits, beyond a double's precision
local ARRIVAL_BASE = 1700000000000

-- Returns nil if r is a complete fake record, else what is wrong with it.
local function record_problem(r)
  if type(r) ~= "table" then return "expected a string or a table, got a " .. type(r) end
  local function bad(field, want) return format("%s must be %s, got a %s", field, want, type(r[field])) end
  if type(r.data) ~= "string" then return bad("data", "a string") end
  if type(r.partitionKey) ~= "string" then return bad("partitionKey", "a string") end
  if type(r.sequenceNumber) ~= "string" or not r.sequenceNumber:match("^%d+$") then
    return bad("sequenceNumber", "a decimal string")
  end
  if type(r.subSequenceNumber) ~= "number" then return bad("subSequenceNumber", "a number") end
  if type(r.approximateArrivalTimestamp) ~= "number" then return bad("approximateArrivalTimestamp", "a number (ms)") end
  return nil
end

-- Builds fake records (see the top of this file).
function testing.records(list, opts)
  if type(list) ~= "table" then error("testing.records: expected a list, got a " .. type(list), 2) end
  local start = opts and opts.start or 1
  local out = {}
  for i = 1, #list do
    local item, n = list[i], start + i - 1
    if type(item) == "string" then item = { data = item } end
    if type(item) ~= "table" then
      error(format("testing.records: item %d: expected a string or a table, got a %s", i, type(item)), 2)
    end
    local r = {
      data = item.data,
      partitionKey = item.partitionKey or ("key-" .. n),
      sequenceNumber = item.sequenceNumber or (SEQ_PREFIX .. format("%010d", n)),
      subSequenceNumber = item.subSequenceNumber or 0,
      approximateArrivalTimestamp = item.approximateArrivalTimestamp or (ARRIVAL_BASE + n),
    }
    local problem = record_problem(r)
    if problem then error(format("testing.records: item %d: %s", i, problem), 2) end
    out[i] = r
  end
  return out
end

-- What each fake shard emitted, not yet looked at (weak keys: a shard
-- dropped by a spec takes its records with it).
local emitted = setmetatable({}, { __mode = "k" })

-- Builds a shard context as the runtime gives it to every call.
function testing.shard(t)
  t = t or {}
  local shard = {
    id = t.id or "shardId-000000000000",
    stream = t.stream or "test",
    position = t.position or "TRIM_HORIZON",
    worker = t.worker or "test-worker",
    state = t.state or {},
  }
  local list = {}
  emitted[shard] = list
  shard.emit = host.emitter(t.outputs, function(_, name, data, pkey, hk)
    list[#list + 1] = { output = name, data = data, partitionKey = pkey, explicitHashKey = hk }
  end)
  return shard
end

-- Takes what the shard emitted since the last look (see the top of this file).
function testing.emitted(shard)
  local list = emitted[shard]
  if not list then error("testing.emitted: not a shard made by testing.shard", 2) end
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  for i = #list, 1, -1 do list[i] = nil end
  return out
end

-- Runs fn(); when it reports an error, what the call emitted is dropped, as
-- the runtime drops a failed call's records.
local function emitting(shard, fn)
  local list = emitted[shard]
  local before = list and #list or 0
  local d = fn()
  if d.kind == "error" and list then
    for i = #list, before + 1, -1 do list[i] = nil end
  end
  return d
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Loads a processor script fresh (see the top of this file).
function testing.load(path, opts)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 2) end
  local env = setmetatable({}, { __index = _G })
  env._G = env
  local dirs = { dirname(path) }
  for _, d in ipairs(opts and opts.lua_path or {}) do dirs[#dirs + 1] = d end
  local patterns = {}
  for _, d in ipairs(dirs) do
    patterns[#patterns + 1] = d .. "/?.lua;" .. d .. "/?/init.lua"
  end
  local search = concat(patterns, ";")
  local loaded = {}
  env.require = function(name)
    local v = loaded[name]
    if v ~= nil then return v end
    local file = package.searchpath(name, search)
    if not file then return require(name) end
    local f = assert(loadfile(file))
    setfenv(f, env)
    v = f(name)
    if v == nil then v = true end
    loaded[name] = v
    return v
  end
  setfenv(chunk, env)
  local P = chunk()
  host.check(P, path)
  return P
end

-- Lays records out as the C runtime does: one array of shardrun_record_t
-- and one arena holding every data, partition key and sequence number.
local function build_batch(records)
  local n = #records
  local recs = rec_array_t(n > 0 and n or 1)
  local parts, off = {}, 0
  for i = 1, n do
    local r, c = records[i], recs[i - 1]
    c.data_off, c.data_len = off, #r.data
    off = off + #r.data
    c.pkey_off, c.pkey_len = off, #r.partitionKey
    off = off + #r.partitionKey
    c.seq_off, c.seq_len = off, #r.sequenceNumber
    off = off + #r.sequenceNumber
    c.sub_seq = r.subSequenceNumber
    c.arrival_ms = r.approximateArrivalTimestamp
    parts[#parts + 1] = r.data
    parts[#parts + 1] = r.partitionKey
    parts[#parts + 1] = r.sequenceNumber
  end
  local blob = concat(parts)
  local arena = char_array_t(#blob > 0 and #blob or 1)
  ffi.copy(arena, blob, #blob)
  return recs, arena
end

local pinned = {} -- keeps the batch's C memory alive during the call

-- The liveness cell the C host keeps per Lua state (see _host.lua): set to
-- the batch's generation during the call, 0 after it, as the C host does.
local live = ffi.new("int32_t[1]")
local generation = 0
host.bind(live)

-- One processRecords call on records laid out in C memory.
local function process_call(P, records, shard)
  local n = #records
  local recs, arena = build_batch(records)
  local slot = #pinned + 1
  pinned[slot] = { recs, arena }
  generation = generation + 1
  live[0] = generation
  local kind, i, msg, tb = host.process(P, recs, arena, n, shard, generation)
  live[0] = 0
  pinned[slot] = nil
  if kind == "error" or kind == "invalid" then return { kind = "error", error = msg, traceback = tb } end
  if kind == "none" then return { kind = "none" } end
  if kind == "all" then return { kind = "checkpoint", index = n > 0 and n or nil, record = records[n] } end
  local d = { kind = kind, index = i, record = records[i] }
  if kind == "failed" then d.error = msg end
  return d
end

-- Calls P.processRecords as the runtime does (see the top of this file).
function testing.process(P, records, shard)
  if type(records) ~= "table" then error("testing.process: records must be a list, got a " .. type(records), 2) end
  for i = 1, #records do
    if record_problem(records[i]) then -- strings or partial tables: fill them in
      records = testing.records(records)
      break
    end
  end
  shard = shard or testing.shard()
  return emitting(shard, function() return process_call(P, records, shard) end)
end

-- Calls a lifecycle function (initialize, shardEnded, leaseLost,
-- shutdownRequested) as the runtime does; a missing one is "none".
function testing.lifecycle(P, name, shard)
  shard = shard or testing.shard()
  return emitting(shard, function()
    local kind, _, msg, tb = host.lifecycle(P, name, shard)
    if kind == "all" then return { kind = "checkpoint" } end
    if kind == "error" then return { kind = "error", error = msg, traceback = tb } end
    return { kind = kind }
  end)
end

-- Calls P.onTimer as the runtime does (see the top of this file).
function testing.timer(P, shard, now_ms)
  if type(now_ms) ~= "number" then error("testing.timer: now_ms must be a number (ms)", 2) end
  shard = shard or testing.shard()
  return emitting(shard, function()
    local kind, a, b, c = host.timer(P, shard, now_ms)
    if kind == "all" then return { kind = "checkpoint" } end
    if kind == "at" then return { kind = "at", sequenceNumber = b, subSequenceNumber = a } end
    if kind == "error" then return { kind = "error", error = b, traceback = c } end
    return { kind = kind }
  end)
end

return testing
