-- examples/rollup/shardrun.lua: config for the per-minute rollup example.
--
--   ./shardrun stream -c examples/rollup/shardrun.lua create clicks --shards 2
--   ./shardrun stream -c examples/rollup/shardrun.lua create counts --shards 1
--   for k in a b c; do seq 1 20 | sed "s/.*/{\"key\":\"$k\"}/" |
--     ./shardrun put -c examples/rollup/shardrun.lua clicks --partition-key $k; done
--   ./shardrun run -c examples/rollup/shardrun.lua      # counts appear once a minute is over; Ctrl-C to stop
--
-- Paths are relative to this file's folder. onTimer runs every second on
-- each shard (timer_interval_ms), busy or idle: it closes the minutes that
-- are over and checkpoints what they covered.
application = "rollup"
source = { type = "local", path = "data/streams.db" }
leases = { type = "local", path = "data/leases.db" }
outputs = { counts = { stream = "counts" } }
streams = {
  { name = "clicks", processor = "rollup.lua", initial_position = "TRIM_HORIZON", timer_interval_ms = 1000 },
}
