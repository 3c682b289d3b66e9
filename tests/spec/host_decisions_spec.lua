-- The decision rules of DESIGN.md section 4, as lua/shardrun/_host.lua and the
-- C host apply them, exercised through shardrun.testing (which hands the
-- batch to _host.lua itself).
local testing = require "shardrun.testing"
local record = require "shardrun.record"

-- A processor returning what `decide(records)` gives.
local function returning(decide)
  return { processRecords = function(records) return decide(records) end }
end

local function decide(fn, items)
  local recs = testing.records(items or { "a", "b", "c" })
  return testing.process(returning(fn), recs), recs
end

describe("decisions", function()
  it("nothing / nil: processed, no checkpoint", function()
    assert.are.same({ kind = "none" }, (decide(function() end)))
    assert.are.same({ kind = "none" }, (decide(function() return nil end)))
  end)

  it('"checkpoint": after the last record of the batch', function()
    local d, recs = decide(function() return "checkpoint" end)
    assert.are.equal("checkpoint", d.kind)
    assert.are.equal(3, d.index)
    assert.are.equal(recs[3], d.record)
  end)

  it('"checkpoint" on an empty batch names no record', function()
    local d = decide(function() return "checkpoint" end, {})
    assert.are.same({ kind = "checkpoint" }, d)
  end)

  it("{checkpoint = record}: at that record", function()
    local d, recs = decide(function(r) return { checkpoint = r[2] } end)
    assert.are.same({ kind = "at", index = 2, record = recs[2] }, d)
  end)

  it("a record of the batch itself: at that record", function()
    local d, recs = decide(function(r) return r[1] end)
    assert.are.same({ kind = "at", index = 1, record = recs[1] }, d)
  end)

  it("a sequence number string of the batch: at that record", function()
    local d, recs = decide(function(r) return r[2].sequenceNumber end)
    assert.are.same({ kind = "at", index = 2, record = recs[2] }, d)
    d = decide(function(r) return { checkpoint = r[3].sequenceNumber } end)
    assert.are.equal(3, d.index)
  end)

  it("a copy of a record (record.copy) matches by sequence and sub-sequence number", function()
    local items = { { data = "a", sequenceNumber = "5", subSequenceNumber = 0 },
      { data = "b", sequenceNumber = "5", subSequenceNumber = 1 },
      { data = "c", sequenceNumber = "6", subSequenceNumber = 0 } }
    local d = decide(function(r) return { checkpoint = record.copy(r[1]) } end, items)
    assert.are.equal("at", d.kind)
    assert.are.equal(1, d.index)
    -- a copy names its own sub-record
    d = decide(function(r) return { checkpoint = record.copy(r[2]) } end, items)
    assert.are.equal(2, d.index)
  end)

  it("a bare sequence number of a KPL aggregate names sub-record 0, as the KCL's checkpoint(String)", function()
    local items = { { data = "a", sequenceNumber = "5", subSequenceNumber = 0 },
      { data = "b", sequenceNumber = "5", subSequenceNumber = 1 },
      { data = "c", sequenceNumber = "5", subSequenceNumber = 2 } }
    -- checkpointing at "5" must not cover sub-records 1 and 2, which were not named
    local d = decide(function() return "5" end, items)
    assert.are.equal(1, d.index)
    d = decide(function(r) return { failed = r[2].sequenceNumber } end, items)
    assert.are.equal("failed", d.kind)
    assert.are.equal(1, d.index)
    -- a record passed as a record keeps its sub-sequence number
    d = decide(function(r) return { failed = r[3], error = "bad" } end, items)
    assert.are.equal(3, d.index)
  end)

  it("a bare sequence number whose sub-record 0 is not in the batch is refused, saying why", function()
    local items = { { data = "b", sequenceNumber = "5", subSequenceNumber = 1 },
      { data = "c", sequenceNumber = "5", subSequenceNumber = 2 } }
    local d = decide(function() return "5" end, items)
    assert.are.equal("error", d.kind)
    assert.matches("names sub-record 0 of a KPL aggregate, which is not in this batch", d.error, 1, true)
  end)

  it("a sequence number not in the batch is an error naming it", function()
    local d = decide(function() return "123456789" end)
    assert.are.equal("error", d.kind)
    assert.matches("invalid decision: sequence number 123456789 is not in this batch", d.error, 1, true)
    d = decide(function() return { checkpoint = { sequenceNumber = "42" } } end)
    assert.are.equal("error", d.kind)
    assert.matches("sequence number 42 is not in this batch", d.error, 1, true)
  end)

  it("a sub-sequence number not in the batch is an error", function()
    local d = decide(function(r)
      local c = record.copy(r[1])
      c.subSequenceNumber = 7
      return { checkpoint = c }
    end)
    assert.are.equal("error", d.kind)
  end)

  it("a number instead of a sequence number string is an error", function()
    local d = decide(function() return 5 end)
    assert.are.equal("error", d.kind)
    assert.matches("got a number 5", d.error, 1, true)
    d = decide(function() return { checkpoint = 5 } end)
    assert.are.equal("error", d.kind)
    assert.matches("must be a sequence number string, not a number", d.error, 1, true)
  end)

  it("other types and malformed tables are errors", function()
    local cases = {
      { true, "invalid decision: expected nil" },
      { function() end, "got a function" },
      { { foo = 1 }, "invalid decision: a table needs checkpoint = record or failed = record" },
      { { checkpoint = true }, "checkpoint must be a record or a sequence number string, got a boolean" },
      { { failed = 3 }, "failed must be a sequence number string, not a number" },
    }
    for _, c in ipairs(cases) do
      local d = decide(function() return c[1] end)
      assert.are.equal("error", d.kind)
      assert.matches(c[2], d.error, 1, true)
    end
  end)

  it("{failed = record, error = why}: failed at that record, with the message", function()
    local d, recs = decide(function(r) return { failed = r[2], error = "bad input" } end)
    assert.are.same({ kind = "failed", index = 2, record = recs[2], error = "bad input" }, d)
  end)

  it("{failed = record} without error gets a default message", function()
    local d = decide(function(r) return { failed = r[3] } end)
    assert.are.equal("failed", d.kind)
    assert.are.equal(3, d.index)
    assert.are.equal("record reported as failed", d.error)
  end)

  it("{failed = sequence number not in the batch} is an error", function()
    local d = decide(function() return { failed = "999" } end)
    assert.are.equal("error", d.kind)
  end)

  it("an error raised by processRecords is an error with message and traceback", function()
    local d = decide(function() error("poison record") end)
    assert.are.equal("error", d.kind)
    assert.matches("poison record", d.error, 1, true)
    assert.is_string(d.traceback)
    assert.matches("traceback", d.traceback)
  end)

  it("a record of an earlier batch is not a record of this one", function()
    local old
    local P = { processRecords = function(records)
      if old then return { checkpoint = old } end
      old = records[1]
    end }
    testing.process(P, { "a" })
    local d = testing.process(P, testing.records({ "b" }, { start = 2 }))
    assert.are.equal("error", d.kind) -- its fields were never read: the view is dead
  end)
end)

-- _host.lua makes a state's first records with the interpreter and the rest
-- with a compiled copy of the same loop (host.fill_jit_after): both must
-- make the same records, and both must leave them dead after their batch.
describe("records made by either loop", function()
  local host = require "shardrun._host"
  local saved = host.fill_jit_after
  after_each(function() host.fill_jit_after = saved end)

  local function check_path(threshold)
    host.fill_jit_after = threshold
    local items = {}
    for i = 1, 300 do items[i] = "rec" .. i end
    local kept
    local seen = {}
    local P = { processRecords = function(records)
      if kept then
        local ok, err = pcall(function() return kept.partitionKey end) -- never read in its batch
        assert.is_false(ok)
        assert.matches("earlier batch", err)
        return "checkpoint"
      end
      for i = 1, #records do seen[i] = records[i].data .. "@" .. records[i].sequenceNumber end
      kept = records[7]
      return { checkpoint = records[250] }
    end }
    local recs = testing.records(items)
    local d = testing.process(P, recs)
    assert.are.same({ kind = "at", index = 250, record = recs[250] }, d)
    for i = 1, 300 do assert.are.equal(items[i] .. "@" .. recs[i].sequenceNumber, seen[i]) end
    local d2 = testing.process(P, testing.records({ "x" }, { start = 301 }))
    assert.are.equal("checkpoint", d2.kind, tostring(d2.error))
  end

  it("the interpreter's", function() check_path(math.huge) end)
  it("the compiled loop's", function() check_path(0) end)
end)
