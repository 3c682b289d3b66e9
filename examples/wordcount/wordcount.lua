-- examples/wordcount/wordcount.lua: counts the words of each shard.
--
-- Each shard runs its own copy of this script (its own lua_State). Words are
-- runs of letters and digits, lower-cased. The counts live in shard.state and
-- are written to one file per shard,
--   <out_dir>/<stream>.<shard id>.counts   (out_dir: data/ next to this file)
--   # stream=words shard=shardId-000000000000 records=1234 words=5678 last=<seq> sub=0
--   the<TAB>321
--   ...                                    (by count, highest first)
-- after every batch, before the batch is checkpointed; the file is replaced
-- atomically (written aside, then renamed).
--
-- Exact counts across restarts: the file records the last sequence number it
-- includes. initialize() reloads it, and processRecords skips records at or
-- before that point. So if the worker dies after writing the file but before
-- its checkpoint is stored, the re-delivered records are not counted twice,
-- and nothing checkpointed is ever missing from the file. (Against a machine
-- crash the rename would also need an fsync; against a process crash this is
-- enough.) Rewriting the file every batch is cheap for a small vocabulary;
-- with a large one, write and checkpoint every N seconds instead (return nil
-- from processRecords in between).
--
-- Try it: `make demo`, or the commands at the top of shardrun.lua here.
-- Test it: tests/spec/example_wordcount_spec.lua (scripts/run-spec.sh).
local record = require "shardrun.record"

local P = {}

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/[^/]*$") or "."
end

-- Settings (a spec may change them on the loaded P before initialize).
P.settings = {
  out_dir = os.getenv("WORDCOUNT_OUT") or (script_dir() .. "/data"),
}

local function counts_path(shard)
  return P.settings.out_dir .. "/" .. shard.stream .. "." .. shard.id .. ".counts"
end

-- Reads a counts file written by write_counts; nil if there is none.
local function read_counts(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local st = { counts = {} }
  local header = f:read("*l") or ""
  st.records = tonumber(header:match(" records=(%d+)")) or 0
  st.words = tonumber(header:match(" words=(%d+)")) or 0
  st.last = header:match(" last=(%d+)")
  st.last_sub = tonumber(header:match(" sub=(%d+)")) or 0
  for line in f:lines() do
    local w, n = line:match("^([^\t]+)\t(%d+)$")
    if w then st.counts[w] = tonumber(n) end
  end
  f:close()
  return st
end

local function write_counts(shard)
  local st = shard.state
  local words = {}
  for w in pairs(st.counts) do words[#words + 1] = w end
  table.sort(words, function(a, b)
    local ca, cb = st.counts[a], st.counts[b]
    if ca ~= cb then return ca > cb end
    return a < b
  end)
  local out = { string.format("# stream=%s shard=%s records=%d words=%d last=%s sub=%d\n", shard.stream,
    shard.id, st.records, st.words, st.last or "", st.last_sub or 0) }
  for i = 1, #words do
    out[#out + 1] = words[i] .. "\t" .. st.counts[words[i]] .. "\n"
  end
  local path = counts_path(shard)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  assert(f:write(table.concat(out)))
  assert(f:close())
  assert(os.rename(tmp, path))
end

function P.initialize(shard)
  os.execute("mkdir -p '" .. P.settings.out_dir:gsub("'", "'\\''") .. "'")
  local st = shard.state
  if st.counts == nil then -- a fresh state (not a hot reload): resume from the counts file
    local saved = read_counts(counts_path(shard))
    st.counts = saved and saved.counts or {}
    st.records = saved and saved.records or 0
    st.words = saved and saved.words or 0
    st.last = saved and saved.last
    st.last_sub = saved and saved.last_sub or 0
  end
end

function P.processRecords(records, shard)
  local st = shard.state
  local counts, words, counted = st.counts, st.words, 0
  local done = st.last and { sequenceNumber = st.last, subSequenceNumber = st.last_sub }
  for i = 1, #records do
    local r = records[i]
    if not done or record.compare(r, done) > 0 then
      for w in r.data:lower():gmatch("%w+") do
        counts[w] = (counts[w] or 0) + 1
        words = words + 1
      end
      counted = counted + 1
    end
  end
  if counted > 0 then
    local last = records[#records]
    st.words, st.records = words, st.records + counted
    st.last, st.last_sub = last.sequenceNumber, last.subSequenceNumber
    write_counts(shard)
  end
  return "checkpoint"
end

function P.shardEnded(shard)
  write_counts(shard)
  return "checkpoint"
end

function P.shutdownRequested(shard)
  write_counts(shard)
  return "checkpoint"
end

return P
