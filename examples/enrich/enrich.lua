-- examples/enrich/enrich.lua: decodes JSON events, drops what is not wanted,
-- adds fields, and emits each kept event to another stream.
--
-- Input: one JSON object per record, e.g.
--   {"user": "u-17", "action": "buy", "amount": 12.5, "ts": 1700000000000}
-- Kept: objects with a string "user" whose action is not one of
-- settings.drop_actions (by default heartbeats). Each kept event is emitted
-- to the output "enriched" (config: outputs.enriched) as the same object plus
--   "tier":   settings.tiers[user], or "standard"
--   "source": {"stream", "shard", "sequenceNumber", "subSequenceNumber"}
-- with the user as partition key, so one user's events stay in order in the
-- output stream (shardrun puts the records of one key in emit order).
-- Records that are not a JSON object with a "user" are counted in
-- shard.state.rejected and skipped (see examples/json-filter for keeping them).
--
-- Delivery: every batch returns "checkpoint", and shardrun writes that
-- checkpoint only after every event emitted for the batch is in the output
-- stream. After a crash, the records after the last checkpoint are processed
-- again and their events emitted again: at least once. "source" names the
-- input record, so a consumer can drop duplicates (stream, shard,
-- sequenceNumber and subSequenceNumber together are unique).
--
-- Try it: the commands at the top of shardrun.lua here.
-- Test it: tests/spec/example_enrich_spec.lua (scripts/run-spec.sh).
local json = require "shardrun.json"

local P = {}

P.settings = {
  output = "enriched",
  drop_actions = { heartbeat = true },
  tiers = { ["u-1"] = "gold", ["u-2"] = "silver" },
}

-- The event in record r, or nil when it is not one we keep.
local function decode(data)
  local ev = json.decode_safe(data)
  if type(ev) ~= "table" or type(ev.user) ~= "string" or ev.user == "" then return nil end
  return ev
end

function P.processRecords(records, shard)
  local st = shard.state
  st.kept, st.dropped, st.rejected = st.kept or 0, st.dropped or 0, st.rejected or 0
  local s = P.settings
  local emit, encode = shard.emit, json.encode
  for i = 1, #records do
    local r = records[i]
    local ev = decode(r.data)
    if not ev then
      st.rejected = st.rejected + 1
    elseif s.drop_actions[ev.action] then
      st.dropped = st.dropped + 1
    else
      ev.tier = s.tiers[ev.user] or "standard"
      ev.source = { stream = shard.stream, shard = shard.id, sequenceNumber = r.sequenceNumber,
                    subSequenceNumber = r.subSequenceNumber }
      emit(s.output, encode(ev), ev.user)
      st.kept = st.kept + 1
    end
  end
  return "checkpoint"
end

function P.shardEnded() return "checkpoint" end
function P.shutdownRequested() return "checkpoint" end

return P
