-- shardrun.record: copy, copy_all, seq_compare, compare, lines.
local record = require "shardrun.record"
local testing = require "shardrun.testing"

describe("shardrun.record", function()
  describe("copy", function()
    it("copies the five fields into a plain table", function()
      local r = { data = "d", partitionKey = "k", sequenceNumber = "12", subSequenceNumber = 3,
        approximateArrivalTimestamp = 1700000000123, extra = "not copied" }
      local c = record.copy(r)
      assert.are.same({ data = "d", partitionKey = "k", sequenceNumber = "12", subSequenceNumber = 3,
        approximateArrivalTimestamp = 1700000000123 }, c)
      assert.are_not.equal(r, c)
    end)

    it("makes a batch record usable after processRecords returned", function()
      local kept, raw
      local P = {
        processRecords = function(records)
          kept, raw = record.copy(records[2]), records[1]
        end,
      }
      local recs = testing.records { "a", "b\0\255" }
      assert.are.equal("none", testing.process(P, recs).kind)
      assert.are.same(recs[2], kept)
      -- a field the script did not read in time cannot be read from the view later
      assert.has_error(function() return raw.data end)
    end)

    it("raises on a non-table", function()
      assert.has_error(function() record.copy("x") end, "record.copy: expected a record, got a string")
    end)
  end)

  it("copy_all copies a batch or a range of it", function()
    local recs = testing.records { "a", "b", "c" }
    assert.are.same(recs, record.copy_all(recs))
    assert.are.same({ recs[2], recs[3] }, record.copy_all(recs, 2))
    assert.are.same({ recs[1] }, record.copy_all(recs, 1, 1))
  end)

  describe("seq_compare", function()
    it("compares decimal strings exactly, beyond a double's precision", function()
      local a = "49590338271490256608559692538361571095921575989136588898"
      local b = "49590338271490256608559692538361571095921575989136588899"
      assert.are.equal(tonumber(a), tonumber(b)) -- what tonumber would get wrong
      assert.are.equal(-1, record.seq_compare(a, b))
      assert.are.equal(1, record.seq_compare(b, a))
      assert.are.equal(0, record.seq_compare(a, a))
    end)
    it("orders by length first, and ignores leading zeros", function()
      assert.are.equal(1, record.seq_compare("10", "9"))
      assert.are.equal(0, record.seq_compare("00000000000000000005", "5"))
      assert.are.equal(-1, record.seq_compare("00000000000000000005", "6"))
      assert.are.equal(0, record.seq_compare("0", "000"))
    end)
    it("raises on anything but decimal strings", function()
      assert.has_error(function() record.seq_compare(1, "2") end)
      assert.has_error(function() record.seq_compare("1a", "2") end)
      assert.has_error(function() record.seq_compare("", "2") end)
    end)
  end)

  it("compare orders records by sequence then sub-sequence number", function()
    local a = { sequenceNumber = "5", subSequenceNumber = 0 }
    local b = { sequenceNumber = "5", subSequenceNumber = 2 }
    local c = { sequenceNumber = "6", subSequenceNumber = 0 }
    assert.are.equal(-1, record.compare(a, b))
    assert.are.equal(1, record.compare(b, a))
    assert.are.equal(-1, record.compare(b, c))
    assert.are.equal(0, record.compare(a, { sequenceNumber = "5" }))
  end)

  describe("lines", function()
    local function collect(x)
      local out = {}
      for l in record.lines(x) do out[#out + 1] = l end
      return out
    end
    it("splits on \\n and \\r\\n, keeps empty lines, drops no last line", function()
      assert.are.same({ "a", "b", "", "c" }, collect("a\nb\r\n\nc"))
      assert.are.same({ "a", "b" }, collect("a\nb\n"))
      assert.are.same({}, collect(""))
      assert.are.same({ "" }, collect("\n"))
    end)
    it("takes a record and reads its data", function()
      assert.are.same({ "x", "y" }, collect({ data = "x\ny" }))
    end)
    it("raises on other values", function()
      assert.has_error(function() record.lines(5) end)
    end)
  end)
end)
