-- examples/enrich/shardrun.lua: config for the enrich example.
--
--   ./shardrun stream -c examples/enrich/shardrun.lua create events --shards 2
--   ./shardrun stream -c examples/enrich/shardrun.lua create events-enriched --shards 2
--   printf '%s\n' '{"user":"u-1","action":"buy","amount":3}' '{"user":"u-9","action":"heartbeat"}' 'oops' |
--     ./shardrun put -c examples/enrich/shardrun.lua events
--   ./shardrun run -c examples/enrich/shardrun.lua --drain
--   ./shardrun stream -c examples/enrich/shardrun.lua list     # events-enriched holds 1 record
--
-- Paths are relative to this file's folder. The output stream must exist
-- before the worker starts (a missing one is a config error, exit 2).
application = "enrich"
source = { type = "local", path = "data/streams.db" }
leases = { type = "local", path = "data/leases.db" }
outputs = {
  enriched = { stream = "events-enriched" },   -- a stream of the source; or { stream, type = "kinesis", region, endpoint }
}
streams = {
  { name = "events", processor = "enrich.lua", initial_position = "TRIM_HORIZON",
    max_batching_window_ms = 200 },            -- fewer, larger puts downstream when records trickle in
}
