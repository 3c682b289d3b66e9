-- examples/json-filter/filter.lua: keeps the JSON records that match.
--
-- Each record's data is decoded as JSON (shardrun.json). A record is KEPT when
-- it is a JSON object whose settings.field equals settings.value (by default:
-- level == "error"). Kept records are appended, one per line, to
--   <out_dir>/<stream>.<shard id>.matches.jsonl   (out_dir: data/ next to this file,
--                                                  or $JSON_FILTER_OUT)
-- as their original JSON text (line breaks, which valid JSON only has as
-- whitespace, become spaces). Records that do not match are dropped.
--
-- Invalid records are neither fatal nor silently lost. A record that is not
-- valid UTF-8, not valid JSON, or JSON but not an object/array (e.g. `42`) is
-- REJECTED: counted in shard.state.rejected, appended to
--   <out_dir>/<stream>.<shard id>.rejects.jsonl
-- as {"stream", "shard", "sequenceNumber", "subSequenceNumber", "partitionKey",
-- "error", "data"} (data as text, or "data_hex" when it is not UTF-8), and
-- reported with one key=value line per batch on stderr. The batch still
-- succeeds: the reject is kept in that file, so nothing is dropped unseen, and
-- one bad record does not stop the stream.
--
-- One pair of files per shard: shards run in parallel, each in its own Lua
-- state, so each appends to its own files (whole lines, in sequence order).
-- Both files are flushed before the batch is checkpointed, so what is
-- checkpointed is written. Delivery is at least once: after a crash, a batch
-- that was written but not checkpointed is processed again and its lines
-- appear twice (dedupe on sequenceNumber if that matters).
--
-- Try it: the commands at the top of shardrun.lua here.
-- Test it: tests/spec/example_json_filter_spec.lua (scripts/run-spec.sh).
local json = require "shardrun.json"

local P = {}

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/[^/]*$") or "."
end

-- Settings: edit them here (a spec may change them on the loaded P).
P.settings = {
  field = "level", -- keep objects whose `field`...
  value = "error", -- ...equals `value`
  out_dir = os.getenv("JSON_FILTER_OUT") or (script_dir() .. "/data"),
}

local function matches(obj)
  return obj[P.settings.field] == P.settings.value
end

-- Why a record's data is rejected (nil: it is not), and the decoded value.
local function check(data)
  if not json.is_utf8(data) then return "not valid UTF-8" end
  local v, err = json.decode_safe(data)
  if v == nil then return err end
  if type(v) ~= "table" then
    return "not a JSON object (got " .. (v == json.null and "null" or "a " .. type(v)) .. ")"
  end
  return nil, v
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function reject_line(r, shard, why)
  local t = {
    stream = shard.stream,
    shard = shard.id,
    sequenceNumber = r.sequenceNumber,
    subSequenceNumber = r.subSequenceNumber,
    error = why,
  }
  local data, pk = r.data, r.partitionKey
  if json.is_utf8(data) then t.data = data else t.data_hex = hex(data) end
  if json.is_utf8(pk) then t.partitionKey = pk else t.partitionKey_hex = hex(pk) end
  return json.encode(t) .. "\n"
end

local function log_rejects(shard, n, first_seq, why, path)
  io.stderr:write(string.format('ts=%s level=warn event=json_filter_rejected stream=%s shard=%s count=%d'
    .. ' first_seq=%s first_error=%q file=%s\n', os.date("!%Y-%m-%dT%H:%M:%SZ"), shard.stream, shard.id, n,
    first_seq, why, path))
end

local function open_files(shard)
  local st = shard.state
  if st.matches then return end
  local dir = P.settings.out_dir
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local base = dir .. "/" .. shard.stream .. "." .. shard.id
  st.matches_path, st.rejects_path = base .. ".matches.jsonl", base .. ".rejects.jsonl"
  st.matches = assert(io.open(st.matches_path, "ab"))
  st.rejects = assert(io.open(st.rejects_path, "ab"))
end

local function close_files(shard)
  local st = shard.state
  if st.matches then st.matches:close() end
  if st.rejects then st.rejects:close() end
  st.matches, st.rejects = nil, nil
end

function P.initialize(shard)
  local st = shard.state
  st.seen, st.kept, st.rejected = st.seen or 0, st.kept or 0, st.rejected or 0
  open_files(shard)
end

function P.processRecords(records, shard)
  local st = shard.state
  open_files(shard)
  local kept, bad = {}, {}
  local first_seq, first_why
  for i = 1, #records do
    local r = records[i]
    local why, obj = check(r.data)
    if why then
      bad[#bad + 1] = reject_line(r, shard, why)
      if not first_seq then first_seq, first_why = r.sequenceNumber, why end
    elseif matches(obj) then
      kept[#kept + 1] = (r.data:gsub("[\r\n]", " ")) .. "\n"
    end
  end
  if #kept > 0 then assert(st.matches:write(table.concat(kept))) end
  if #bad > 0 then assert(st.rejects:write(table.concat(bad))) end
  assert(st.matches:flush())
  assert(st.rejects:flush())
  st.seen, st.kept, st.rejected = st.seen + #records, st.kept + #kept, st.rejected + #bad
  if #bad > 0 then log_rejects(shard, #bad, first_seq, first_why, st.rejects_path) end
  return "checkpoint"
end

function P.shardEnded(shard)
  close_files(shard)
  return "checkpoint"
end

function P.shutdownRequested(shard)
  close_files(shard)
  return "checkpoint"
end

function P.leaseLost(shard)
  close_files(shard)
end

return P
