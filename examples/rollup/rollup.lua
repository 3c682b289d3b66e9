-- examples/rollup/rollup.lua: per-minute counts per key, emitted downstream.
--
-- Input: JSON objects with a "key" and, optionally, an event time "ts" (ms
-- since the epoch); without "ts" the record's arrival time counts. Each
-- shard counts its records per key in one-minute tumbling windows
-- (shardrun.window, in shard.state) and, once a minute is over, emits one
-- record per key to the output "counts" (config: outputs.counts):
--   {"key": "k", "minute": 1700000040000, "count": 42, "shard": "shardId-..."}
-- with the key as partition key.
--
-- When a minute is over: when a record at least settings.lateness_ms past
-- its end has been seen (records may come that much out of order), or, on a
-- quiet shard, when onTimer (timer_interval_ms) finds no record came for
-- settings.idle_ms. Records later than that are counted in
-- shard.state.counts.late and dropped.
--
-- Checkpoints: processRecords checkpoints only when no minute is open;
-- onTimer checkpoints just before the first record of the oldest open minute,
-- and shardrun writes it only after the counts emitted before it are in the
-- output stream. So a restart recounts the open minutes from their first
-- record: nothing counted is lost, and a minute flushed but not yet
-- checkpointed is flushed again with the same count (at least once; key on
-- key + minute + shard downstream). A graceful stop (shutdownRequested)
-- flushes nothing: the next owner recounts the open minutes whole.
-- Counts are per shard: a key's records are in one shard (its partition
-- key's), until a reshard moves it; sum per key and minute downstream.
--
-- Try it: the commands at the top of shardrun.lua here.
-- Test it: tests/spec/example_rollup_spec.lua (scripts/run-spec.sh).
local json = require "shardrun.json"
local window = require "shardrun.window"

local P = {}

P.settings = { output = "counts", lateness_ms = 5000, idle_ms = 10000 }

local per_minute

-- The window set, made on first use (after a spec has changed P.settings,
-- and again in a hot-reloaded version: its counts stay in shard.state).
local function windows()
  if per_minute then return per_minute end
  local s = P.settings
  per_minute = window.tumbling {
    name = "counts",
    size_ms = 60000,
    lateness_ms = s.lateness_ms,
    idle_ms = s.idle_ms,
    time = function(r, ev) return tonumber(ev.ts) or r.approximateArrivalTimestamp end,
    emit = function(sh, key, count, start_ms)
      sh.emit(s.output, json.encode { key = key, minute = start_ms, count = count, shard = sh.id }, key)
    end,
  }
  return per_minute
end

function P.processRecords(records, shard)
  local w = windows()
  for i = 1, #records do
    local r = records[i]
    local ev = json.decode_safe(r.data)
    if type(ev) == "table" and ev.key ~= nil then
      w:add(shard, r, tostring(ev.key), ev)
    else
      shard.state.rejected = (shard.state.rejected or 0) + 1
    end
  end
  return w:checkpoint(shard)
end

function P.onTimer(shard, now_ms)
  return windows():tick(shard, now_ms)
end

function P.shardEnded(shard)
  windows():close(shard) -- nothing more comes to this shard
  return "checkpoint"
end

function P.shutdownRequested(shard)
  return windows():checkpoint(shard) -- "checkpoint" only if no minute is open
end

return P
