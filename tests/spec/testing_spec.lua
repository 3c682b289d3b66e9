-- shardrun.testing: fake records and shards, loading scripts fresh, and
-- calling processRecords / lifecycle functions as the runtime does.
local testing = require "shardrun.testing"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'") == 0)
  return p
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("shardrun.testing", function()
  describe("records", function()
    it("builds plain records with all five fields from strings and tables", function()
      local recs = testing.records { "a", { data = "c", partitionKey = "k", subSequenceNumber = 2 } }
      assert.are.equal(2, #recs)
      assert.are.same({ data = "a", partitionKey = "key-1", sequenceNumber = recs[1].sequenceNumber,
        subSequenceNumber = 0, approximateArrivalTimestamp = 1700000000001 }, recs[1])
      assert.are.equal("c", recs[2].data)
      assert.are.equal("k", recs[2].partitionKey)
      assert.are.equal(2, recs[2].subSequenceNumber)
    end)

    it("gives increasing decimal string sequence numbers, continuing from opts.start", function()
      local recs = testing.records { "a", "b", "c" }
      local record = require "shardrun.record"
      for i = 1, 3 do
        assert.is_string(recs[i].sequenceNumber)
        assert.matches("^%d+$", recs[i].sequenceNumber)
      end
      assert.are.equal(-1, record.seq_compare(recs[1].sequenceNumber, recs[2].sequenceNumber))
      assert.are.equal(-1, record.seq_compare(recs[2].sequenceNumber, recs[3].sequenceNumber))
      local more = testing.records({ "d" }, { start = 4 })
      assert.are.equal(-1, record.seq_compare(recs[3].sequenceNumber, more[1].sequenceNumber))
      assert.are.equal(#recs[1].sequenceNumber, #more[1].sequenceNumber)
    end)

    it("keeps given sequence numbers and rejects malformed items", function()
      assert.are.equal("77", testing.records({ { data = "x", sequenceNumber = "77" } })[1].sequenceNumber)
      assert.has_error(function() testing.records { 5 } end)
      assert.has_error(function() testing.records { { partitionKey = "k" } } end)
      assert.has_error(function() testing.records { { data = "x", sequenceNumber = 7 } } end)
      assert.has_error(function() testing.records { { data = "x", sequenceNumber = "7x" } } end)
    end)
  end)

  it("shard builds a context with defaults and a fresh state", function()
    local a, b = testing.shard(), testing.shard { id = "shardId-000000000007", stream = "s" }
    assert.are.equal("function", type(a.emit)) -- as the runtime's: see emit_timer_spec.lua
    a.emit = nil
    assert.are.same({ id = "shardId-000000000000", stream = "test", position = "TRIM_HORIZON",
      worker = "test-worker", state = {} }, a)
    assert.are.equal("shardId-000000000007", b.id)
    assert.are.equal("s", b.stream)
    assert.are_not.equal(a.state, b.state)
  end)

  describe("load", function()
    local dir
    before_each(function()
      dir = tmpdir()
      write(dir .. "/helper.lua", "local M = { loads = 0 } return M\n")
      write(dir .. "/p.lua", [[
local helper = require "helper"
local json = require "shardrun.json"
helper.loads = helper.loads + 1
counter = (counter or 0) + 1 -- a global: must stay inside this copy
local P = { helper = helper, json = json }
function P.counter() return counter end
function P.processRecords(records) return "checkpoint" end
return P
]])
    end)
    after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

    it("loads a fresh copy each time: own globals, own script-folder modules", function()
      local a = testing.load(dir .. "/p.lua")
      local b = testing.load(dir .. "/p.lua")
      assert.are_not.equal(a, b)
      assert.are.equal(1, a.counter())
      assert.are.equal(1, b.counter())
      assert.is_nil(rawget(_G, "counter"))
      assert.are_not.equal(a.helper, b.helper)
      assert.are.equal(1, a.helper.loads)
      assert.are.equal(require "shardrun.json", a.json) -- runtime modules are shared
    end)

    it("checks the script as the runtime does", function()
      write(dir .. "/none.lua", "return { }\n")
      write(dir .. "/notable.lua", "return 5\n")
      write(dir .. "/badinit.lua", "return { processRecords = function() end, initialize = 1 }\n")
      write(dir .. "/syntax.lua", "local x = \n")
      assert.has_error(function() testing.load(dir .. "/none.lua") end,
        dir .. "/none.lua: the script has no processRecords function")
      assert.has_error(function() testing.load(dir .. "/notable.lua") end,
        dir .. "/notable.lua: the script must return a table of functions (return P), got a number")
      assert.has_error(function() testing.load(dir .. "/badinit.lua") end,
        dir .. "/badinit.lua: initialize must be a function, got a number")
      assert.has_error(function() testing.load(dir .. "/syntax.lua") end)
      assert.has_error(function() testing.load(dir .. "/missing.lua") end)
    end)
  end)

  describe("process", function()
    it("gives processRecords the records' fields, byte for byte", function()
      local seen = {}
      local P = { processRecords = function(records, shard)
        for i = 1, #records do
          local r = records[i]
          seen[i] = { r.data, r.partitionKey, r.sequenceNumber, r.subSequenceNumber, r.approximateArrivalTimestamp }
        end
        seen.shard = shard.id
      end }
      local bin = "nul\0and\255\254invalid utf-8"
      local recs = testing.records { bin, { data = "", partitionKey = "p", subSequenceNumber = 9,
        approximateArrivalTimestamp = 1234 } }
      testing.process(P, recs, testing.shard { id = "s1" })
      assert.are.same({ bin, "key-1", recs[1].sequenceNumber, 0, 1700000000001 }, seen[1])
      assert.are.same({ "", "p", recs[2].sequenceNumber, 9, 1234 }, seen[2])
      assert.are.equal("s1", seen.shard)
    end)

    it("accepts a list of strings, and defaults the shard", function()
      local n, shard
      local P = { processRecords = function(records, s) n, shard = #records, s return "checkpoint" end }
      local d = testing.process(P, { "a", "b" })
      assert.are.equal(2, n)
      assert.are.equal("shardId-000000000000", shard.id)
      assert.are.equal("checkpoint", d.kind)
      assert.are.equal("b", d.record.data)
    end)

    it("hands out lazy records, like the runtime: unread fields are never built", function()
      local r
      local P = { processRecords = function(records) r = records[1]; local _ = r.data end }
      testing.process(P, { "a" })
      assert.are.equal("a", rawget(r, "data"))
      assert.is_nil(rawget(r, "partitionKey"))
    end)

    it("lets state in shard.state carry over between batches", function()
      local P = { processRecords = function(records, shard)
        shard.state.n = (shard.state.n or 0) + #records
      end }
      local shard = testing.shard()
      testing.process(P, { "a", "b" }, shard)
      testing.process(P, testing.records({ "c" }, { start = 3 }), shard)
      assert.are.equal(3, shard.state.n)
    end)
  end)

  describe("lifecycle", function()
    it("normalizes lifecycle returns", function()
      local P = {
        processRecords = function() end,
        shutdownRequested = function() return "checkpoint" end,
        leaseLost = function() end,
        shardEnded = function() return "yes" end,
        initialize = function() error("boom") end,
      }
      assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shutdownRequested"))
      assert.are.same({ kind = "none" }, testing.lifecycle(P, "leaseLost"))
      local d = testing.lifecycle(P, "shardEnded")
      assert.are.equal("error", d.kind)
      assert.are.equal('shardEnded must return "checkpoint" or nothing, got yes', d.error)
      d = testing.lifecycle(P, "initialize")
      assert.are.equal("error", d.kind)
      assert.matches("boom", d.error)
      assert.are.same({ kind = "none" }, testing.lifecycle({ processRecords = P.processRecords }, "initialize"))
    end)

    it("passes the shard context", function()
      local got
      local P = { processRecords = function() end, initialize = function(s) got = s end }
      local shard = testing.shard { id = "x" }
      testing.lifecycle(P, "initialize", shard)
      assert.are.equal(shard, got)
    end)
  end)
end)
