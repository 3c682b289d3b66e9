-- examples/json-filter/shardrun.lua: config for the JSON filter example.
--
--   ./shardrun stream -c examples/json-filter/shardrun.lua create events --shards 2
--   printf '%s\n' '{"level":"error","msg":"disk full"}' '{"level":"info"}' 'not json' |
--     ./shardrun put -c examples/json-filter/shardrun.lua events
--   ./shardrun run -c examples/json-filter/shardrun.lua --drain
--   cat examples/json-filter/data/*.matches.jsonl   # the error events
--   cat examples/json-filter/data/*.rejects.jsonl   # the record that was not JSON
--
-- Paths are relative to this file's folder. What is kept, and where it is
-- written, is set at the top of filter.lua.
application = "json-filter"
source = { type = "local", path = "data/streams.db" }
leases = { type = "local", path = "data/leases.db" }
streams = {
  { name = "events", processor = "filter.lua", initial_position = "TRIM_HORIZON" },
}
