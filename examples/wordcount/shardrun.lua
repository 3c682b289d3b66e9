-- examples/wordcount/shardrun.lua: config for the word-count example.
--
--   ./shardrun stream -c examples/wordcount/shardrun.lua create words --shards 4
--   ./shardrun put -c examples/wordcount/shardrun.lua words < some.txt
--   ./shardrun run -c examples/wordcount/shardrun.lua --drain
--   ./shardrun status -c examples/wordcount/shardrun.lua
--
-- Paths are relative to this file's folder: the local stream, the leases and
-- the per-shard counts (written by wordcount.lua) all live in data/, which
-- `stream create` makes (the lease file's folder is made by `run` as well).
-- `make demo` (scripts/demo.sh) does all of the above from a fresh data/.
application = "wordcount"
source = { type = "local", path = "data/streams.db" }
leases = { type = "local", path = "data/leases.db" }
streams = {
  { name = "words", processor = "wordcount.lua", initial_position = "TRIM_HORIZON" },
}
