-- shard.emit and onTimer under shardrun.testing: the same checks and
-- decisions as under the runtime (shardrun._host), and a failed call emits
-- nothing.
local testing = require "shardrun.testing"

local function P(t) return setmetatable(t, { __index = { processRecords = function() end } }) end

describe("shard.emit", function()
  it("keeps what was emitted, in order, for testing.emitted, which then starts empty", function()
    local shard = testing.shard { outputs = { "enriched", "audit" } }
    local p = P { processRecords = function(records, s)
      for i = 1, #records do
        s.emit("enriched", records[i].data:upper(), records[i].partitionKey)
      end
      s.emit("audit", "n=" .. #records, "audit", "170141183460469231731687303715884105728")
      return "checkpoint"
    end }
    assert.are.equal("checkpoint", testing.process(p, { "a", "b" }, shard).kind)
    assert.are.same({
      { output = "enriched", data = "A", partitionKey = "key-1" },
      { output = "enriched", data = "B", partitionKey = "key-2" },
      { output = "audit", data = "n=2", partitionKey = "audit", explicitHashKey = "170141183460469231731687303715884105728" },
    }, testing.emitted(shard))
    assert.are.same({}, testing.emitted(shard))
  end)

  it("refuses an output the config does not name, with the names it has", function()
    local shard = testing.shard { outputs = { "enriched" } }
    local d = testing.process(P { processRecords = function(_, s) s.emit("enrich", "x", "k") end }, { "a" }, shard)
    assert.are.equal("error", d.kind)
    assert.matches('no output named "enrich" %(outputs: enriched%)', d.error)
  end)

  it("says so when no outputs are configured", function()
    local shard = testing.shard { outputs = {} }
    local d = testing.process(P { processRecords = function(_, s) s.emit("o", "x", "k") end }, { "a" }, shard)
    assert.matches("no outputs configured", d.error)
  end)

  it("accepts any output name when the shard was made without outputs", function()
    local shard = testing.shard()
    testing.process(P { processRecords = function(_, s) s.emit("anything", "x", "k") end }, { "a" }, shard)
    assert.are.equal("anything", testing.emitted(shard)[1].output)
  end)

  it("checks data, partition key and explicit hash key as the runtime does", function()
    local shard = testing.shard()
    local function try(...)
      local args = { ... }
      return testing.process(P { processRecords = function(_, s) s.emit(unpack(args)) end }, { "a" }, shard)
    end
    assert.matches("data must be a string", try("o", 42, "k").error)
    assert.matches("partitionKey must be a string of 1 to 256 bytes", try("o", "x", "").error)
    assert.matches("partitionKey must be", try("o", "x", string.rep("k", 257)).error)
    assert.matches("explicitHashKey must be a decimal string", try("o", "x", "k", "-1").error)
    assert.matches("explicitHashKey must be", try("o", "x", "k", "340282366920938463463374607431768211456").error)
    assert.are.equal("none", try("o", "x", "k", "340282366920938463463374607431768211455").kind)
    assert.matches("over the 1 MiB record limit", try("o", string.rep("x", 1048577), "k").error)
  end)

  it("drops what a call emitted before it raised: its records are processed again", function()
    local shard = testing.shard()
    local p = P { processRecords = function(records, s)
      s.emit("o", "first", "k")
      if records[1].data == "bad" then error("boom") end
    end }
    assert.are.equal("error", testing.process(p, { "bad" }, shard).kind)
    assert.are.same({}, testing.emitted(shard))
    testing.process(p, { "good" }, shard)
    assert.are.equal(1, #testing.emitted(shard))
  end)

  it("works from shardEnded and shutdownRequested too", function()
    local shard = testing.shard()
    local p = P { shardEnded = function(s) s.emit("o", "end", "k") return "checkpoint" end }
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(p, "shardEnded", shard))
    assert.are.equal("end", testing.emitted(shard)[1].data)
  end)
end)

describe("onTimer", function()
  it("gets the shard and the time, and may emit", function()
    local shard = testing.shard()
    local seen
    local p = P { onTimer = function(s, now) seen = now s.emit("o", "tick", "k") end }
    assert.are.same({ kind = "none" }, testing.timer(p, shard, 1700000060000))
    assert.are.equal(1700000060000, seen)
    assert.are.equal("tick", testing.emitted(shard)[1].data)
  end)

  it('"checkpoint" is up to the last record processed', function()
    assert.are.same({ kind = "checkpoint" }, testing.timer(P { onTimer = function() return "checkpoint" end }, nil, 0))
  end)

  it("a position is a sequence number string or a record-like table", function()
    local recs = testing.records { "a", { data = "b", subSequenceNumber = 2 } }
    local function timer(ret) return testing.timer(P { onTimer = function() return ret end }, nil, 0) end
    assert.are.same({ kind = "at", sequenceNumber = recs[1].sequenceNumber, subSequenceNumber = 0 },
      timer(recs[1].sequenceNumber))
    assert.are.same({ kind = "at", sequenceNumber = recs[2].sequenceNumber, subSequenceNumber = 2 }, timer(recs[2]))
    assert.are.same({ kind = "at", sequenceNumber = recs[2].sequenceNumber, subSequenceNumber = 2 },
      timer { checkpoint = recs[2] })
  end)

  it("anything else is an invalid decision, and what it emitted is dropped", function()
    local shard = testing.shard()
    local function timer(ret)
      return testing.timer(P { onTimer = function(s) s.emit("o", "x", "k") return ret end }, shard, 0)
    end
    assert.matches("got a number 42", timer(42).error)
    assert.matches("invalid decision", timer("later").error)
    assert.matches("needs a sequenceNumber string", timer({ sequenceNumber = 5 }).error)
    assert.are.same({}, testing.emitted(shard))
  end)

  it("a script without onTimer does nothing", function()
    assert.are.same({ kind = "none" }, testing.timer(P {}, nil, 0))
  end)

  it("a script whose onTimer is not a function does not load", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("return { processRecords = function() end, onTimer = 5 }\n")
    f:close()
    assert.has_error(function() testing.load(path) end, path .. ": onTimer must be a function, got a number")
    os.remove(path)
  end)
end)
