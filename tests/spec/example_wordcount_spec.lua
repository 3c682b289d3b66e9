-- examples/wordcount/wordcount.lua: counts words per shard, checkpoints every
-- batch, and keeps an exact counts file across restarts.
local testing = require "shardrun.testing"

local SCRIPT = "examples/wordcount/wordcount.lua"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'") == 0)
  return p
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Parses a counts file: header fields and word -> count.
local function counts_file(path)
  local s = assert(read(path), "no counts file " .. path)
  local header, counts, order = {}, {}, {}
  local first = true
  for line in s:gmatch("[^\n]+") do
    if first then
      for k, v in line:gmatch("(%w+)=(%S*)") do header[k] = v end
      first = false
    else
      local w, n = line:match("^(.-)\t(%d+)$")
      counts[w] = tonumber(n)
      order[#order + 1] = w
    end
  end
  return header, counts, order
end

describe("examples/wordcount", function()
  local dir, shard

  -- A fresh copy of the script, writing into dir, initialized for `shard`.
  local function start(s)
    local P = testing.load(SCRIPT)
    P.settings.out_dir = dir
    assert.are.same({ kind = "none" }, testing.lifecycle(P, "initialize", s))
    return P
  end

  before_each(function()
    dir = tmpdir()
    shard = testing.shard { id = "shardId-000000000001", stream = "words" }
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("counts lower-cased words in shard.state and checkpoints the batch", function()
    local P = start(shard)
    local d = testing.process(P, { "The cat", "the dog, THE END", "" }, shard)
    assert.are.equal("checkpoint", d.kind)
    assert.are.same({ the = 3, cat = 1, dog = 1, ["end"] = 1 }, shard.state.counts)
    assert.are.equal(3, shard.state.records)
    assert.are.equal(6, shard.state.words)
  end)

  it("writes the shard's counts file after every batch, highest count first", function()
    local P = start(shard)
    local recs = testing.records { "b a b", "c b" }
    testing.process(P, recs, shard)
    local path = dir .. "/words.shardId-000000000001.counts"
    local header, counts, order = counts_file(path)
    assert.are.same({ b = 3, a = 1, c = 1 }, counts)
    assert.are.same({ "b", "a", "c" }, order)
    assert.are.equal("2", header.records)
    assert.are.equal("5", header.words)
    assert.are.equal(recs[2].sequenceNumber, header.last)
    testing.process(P, testing.records({ "a" }, { start = 3 }), shard)
    header, counts = counts_file(path)
    assert.are.equal(2, counts.a)
    assert.are.equal("3", header.records)
  end)

  it("keeps shards apart: one state and one file per shard", function()
    local other = testing.shard { id = "shardId-000000000002", stream = "words" }
    local P1, P2 = start(shard), start(other)
    testing.process(P1, { "x" }, shard)
    testing.process(P2, { "y y" }, other)
    assert.are.same({ x = 1 }, shard.state.counts)
    assert.are.same({ y = 2 }, other.state.counts)
    local _, c2 = counts_file(dir .. "/words.shardId-000000000002.counts")
    assert.are.same({ y = 2 }, c2)
  end)

  it("checkpoints on shutdownRequested and shardEnded", function()
    local P = start(shard)
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shutdownRequested", shard))
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shardEnded", shard))
    assert.is_not_nil(read(dir .. "/words.shardId-000000000001.counts"))
  end)

  it("resumes from its file after a restart without counting re-delivered records twice", function()
    local P = start(shard)
    local batch1 = testing.records { "a b", "a" }
    testing.process(P, batch1, shard)
    -- the worker dies before the checkpoint is stored: a new worker gets the
    -- same records again, plus new ones, in a fresh state
    local fresh = testing.shard { id = shard.id, stream = "words" }
    local P2 = start(fresh)
    assert.are.same({ a = 2, b = 1 }, fresh.state.counts)
    local again = testing.records { "a b", "a", "c" }
    assert.are.equal("checkpoint", testing.process(P2, again, fresh).kind)
    assert.are.same({ a = 2, b = 1, c = 1 }, fresh.state.counts)
    assert.are.equal(3, fresh.state.records)
  end)

  it("reports an error (no checkpoint) when it cannot write its file", function()
    local P = testing.load(SCRIPT)
    P.settings.out_dir = "/nonexistent-dir/for/wordcount"
    shard.state.counts, shard.state.records, shard.state.words = {}, 0, 0 -- skip initialize's mkdir
    local d = testing.process(P, { "a" }, shard)
    assert.are.equal("error", d.kind)
  end)
end)
