-- examples/rollup/rollup.lua: per-minute counts per key, flushed when a
-- minute is over (by later records, or by onTimer on a quiet shard), with
-- checkpoints that never pass a record of an open minute.
local testing = require "shardrun.testing"
local json = require "shardrun.json"

local SCRIPT = "examples/rollup/rollup.lua"
local T0 = 1700000040000 -- a minute boundary

describe("examples/rollup", function()
  local P, shard

  before_each(function()
    P = testing.load(SCRIPT)
    shard = testing.shard { id = "shardId-000000000000", stream = "clicks", outputs = { "counts" } }
    testing.lifecycle(P, "initialize", shard)
  end)

  local function counts()
    local out = {}
    for _, e in ipairs(testing.emitted(shard)) do
      local c = json.decode(e.data)
      assert.are.equal(c.key, e.partitionKey)
      out[#out + 1] = string.format("%s %d %d", c.key, (c.minute - T0) / 60000, c.count)
    end
    return out
  end

  -- one record per (key, second offset) pair, event time in "ts"
  local function events(list, start)
    local items = {}
    for i, it in ipairs(list) do items[i] = json.encode { key = it[1], ts = T0 + it[2] * 1000 } end
    return testing.records(items, { start = start })
  end

  it("emits a minute's counts once a record 5 s past its end is seen", function()
    local d = testing.process(P, events { { "a", 0 }, { "b", 10 }, { "a", 59 }, { "a", 62 } }, shard)
    assert.are.equal("none", d.kind) -- minute 0 is still open (lateness 5 s)
    assert.are.same({}, counts())
    testing.process(P, events({ { "b", 66 } }, 5), shard)
    assert.are.same({ "a 0 2", "b 0 1" }, counts())
  end)

  it("counts records up to 5 s out of order, and drops later ones as late", function()
    testing.process(P, events { { "a", 58 }, { "a", 63 }, { "a", 59 } }, shard)
    testing.process(P, events({ { "a", 70 } }, 4), shard)
    assert.are.same({ "a 0 2" }, counts())
    testing.process(P, events({ { "a", 1 } }, 5), shard)
    assert.are.equal(1, shard.state.counts.late)
  end)

  it("onTimer flushes a quiet shard's minutes and checkpoints all it covered", function()
    local recs = events { { "a", 1 }, { "a", 2 } }
    testing.process(P, recs, shard)
    local function tick(s) return testing.timer(P, shard, T0 + s * 1000) end
    assert.are.equal("none", tick(3).kind) -- records came since the last tick
    assert.are.equal("none", tick(12).kind) -- 9 s quiet
    assert.are.equal("checkpoint", tick(13).kind)
    assert.are.same({ "a 0 2" }, counts())
  end)

  it("onTimer checkpoints just before the oldest open minute", function()
    local recs = events { { "a", 1 }, { "a", 59 }, { "b", 61 }, { "a", 70 } }
    testing.process(P, recs, shard)
    assert.are.same({ "a 0 2" }, counts())
    local d = testing.timer(P, shard, T0 + 71000)
    assert.are.same({ kind = "at", sequenceNumber = recs[2].sequenceNumber, subSequenceNumber = 0 }, d)
  end)

  it("a graceful stop flushes nothing and checkpoints only when no minute is open", function()
    testing.process(P, events { { "a", 1 } }, shard)
    assert.are.same({ kind = "none" }, testing.lifecycle(P, "shutdownRequested", shard))
    assert.are.same({}, counts())
  end)

  it("shardEnded flushes every open minute and checkpoints", function()
    testing.process(P, events { { "a", 1 }, { "b", 130 } }, shard)
    assert.are.same({ "a 0 1" }, counts())
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shardEnded", shard))
    assert.are.same({ "b 2 1" }, counts())
  end)

  it("uses the arrival time for records without ts, and skips what is not an event", function()
    local recs = testing.records { { data = '{"key":"x"}', approximateArrivalTimestamp = T0 + 1000 }, "nope" }
    testing.process(P, recs, shard)
    testing.lifecycle(P, "shardEnded", shard)
    assert.are.same({ "x 0 1" }, counts())
    assert.are.equal(1, shard.state.rejected)
  end)
end)
