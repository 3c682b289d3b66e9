-- shardrun.window: keyed tumbling and sliding windows in shard.state,
-- closed by the newest time seen or by onTimer, flushed in order, with
-- checkpoints that never pass a record of an open window.
local testing = require "shardrun.testing"
local window = require "shardrun.window"

local MIN = 60000
local T0 = 1700000040000 -- a minute boundary

-- A window set that records what it flushed as "key start count".
local function counting(opts)
  local out = {}
  opts = opts or {}
  opts.size_ms = opts.size_ms or MIN
  opts.emit = function(shard, key, acc, start, stop)
    assert.are.equal(opts.size_ms, stop - start)
    out[#out + 1] = string.format("%s %d %d", key, (start - T0) / 1000, acc)
    shard.emit("rollup", out[#out], key)
  end
  local w = (opts.slide_ms and window.sliding or window.tumbling)(opts)
  return w, out
end

-- Fake records at arrival offsets (seconds from T0), keyed.
local function recs(list, start)
  local items = {}
  for i, it in ipairs(list) do
    items[i] = { data = tostring(it[2]), partitionKey = it[1], approximateArrivalTimestamp = T0 + it[2] * 1000 }
  end
  return testing.records(items, { start = start or 1 })
end

local function feed(w, shard, records)
  for i = 1, #records do w:add(shard, records[i]) end
  return w:checkpoint(shard)
end

describe("shardrun.window", function()
  it("counts per key per minute and flushes a window once a later minute's record arrives", function()
    local shard = testing.shard()
    local w, out = counting()
    assert.is_nil(feed(w, shard, recs { { "a", 1 }, { "b", 2 }, { "a", 59 } }))
    assert.are.same({}, out)
    assert.is_nil(feed(w, shard, recs({ { "a", 61 } }, 4)))
    assert.are.same({ "a 0 2", "b 0 1" }, out) -- key order within a window
    assert.are.equal(2, #testing.emitted(shard))
    w:close(shard)
    assert.are.same({ "a 0 2", "b 0 1", "a 60 1" }, out)
  end)

  it("lets processRecords checkpoint only when no window is open", function()
    local shard = testing.shard()
    local w = counting()
    local p = { processRecords = function(records, s)
      for i = 1, #records do w:add(s, records[i]) end
      return w:checkpoint(s)
    end }
    assert.are.equal("none", testing.process(p, recs { { "a", 1 } }, shard).kind)
    w:close(shard)
    assert.are.equal("checkpoint", testing.process(p, {}, shard).kind)
  end)

  it("onTimer checkpoints just before the first record of the oldest open window", function()
    local shard = testing.shard()
    local w = counting()
    local r = recs { { "a", 1 }, { "a", 30 }, { "b", 70 }, { "a", 130 } }
    feed(w, shard, r) -- minute 0 and 1 flushed by the record at 130 s; minute 2 open
    local p = { processRecords = function() end, onTimer = function(s, now) return w:tick(s, now) end }
    local d = testing.timer(p, shard, T0 + 131000)
    assert.are.same({ kind = "at", sequenceNumber = r[3].sequenceNumber, subSequenceNumber = 0 }, d)
  end)

  it("onTimer names no position when the oldest open window holds the first record it saw", function()
    local shard = testing.shard()
    local w = counting()
    feed(w, shard, recs { { "a", 1 } })
    assert.is_nil(w:tick(shard, T0 + 2000))
  end)

  it("onTimer flushes every window of a shard idle for idle_ms, then checkpoints everything", function()
    local shard = testing.shard()
    local w, out = counting { idle_ms = 5000 }
    feed(w, shard, recs { { "a", 1 }, { "b", 2 } })
    assert.is_nil(w:tick(shard, T0 + 3000))  -- records came since the last tick: active
    assert.is_nil(w:tick(shard, T0 + 7000))  -- 4 s idle
    assert.are.same({}, out)
    assert.are.equal("checkpoint", w:tick(shard, T0 + 8000))
    assert.are.same({ "a 0 1", "b 0 1" }, out)
  end)

  it("event time: records out of order within lateness_ms count, later ones are late", function()
    local shard = testing.shard()
    local late = {}
    local w, out = counting {
      time = function(_, v) return v end,
      lateness_ms = 10000,
      late = function(_, r, key, v) late[#late + 1] = key .. "@" .. (v - T0) / 1000 end,
    }
    local r = testing.records { "x", "y", "z", "w" }
    w:add(shard, r[1], "a", T0 + 55000)
    w:add(shard, r[2], "a", T0 + 65000)
    w:add(shard, r[3], "a", T0 + 50000) -- 15 s behind, but minute 0 is still open (newest - 10 s < 60 s)
    w:checkpoint(shard)
    assert.are.same({}, out)
    w:add(shard, r[4], "a", T0 + 75000) -- newest - lateness = 65 s: minute 0 closes
    w:checkpoint(shard)
    assert.are.same({ "a 0 2" }, out)
    w:add(shard, r[1], "a", T0 + 59000) -- minute 0 is closed: late
    assert.are.same({ "a@59" }, late)
    assert.are.equal(1, shard.state.window.late)
  end)

  it("sliding windows: a record counts in every window it falls in", function()
    local shard = testing.shard()
    local w, out = counting { slide_ms = 20000 }
    feed(w, shard, recs { { "a", 45 } })
    w:close(shard)
    assert.are.same({ "a 0 1", "a 20 1", "a 40 1" }, out) -- [0, 60), [20, 80), [40, 100)
  end)

  it("folds with init and add, and keeps two window sets apart in shard.state", function()
    local shard = testing.shard()
    local sums = {}
    local sum = window.tumbling { name = "sum", size_ms = MIN, init = function() return 0 end,
      add = function(acc, v) return acc + v end,
      emit = function(_, key, acc) sums[#sums + 1] = key .. "=" .. acc end }
    local count, out = counting()
    local r = recs { { "a", 1 }, { "a", 2 } }
    sum:add(shard, r[1], "a", 5)
    sum:add(shard, r[2], "a", 7)
    count:add(shard, r[1])
    sum:close(shard)
    assert.are.same({ "a=12" }, sums)
    assert.are.same({}, out) -- the other set is untouched
    assert.is_not_nil(shard.state.sum)
    assert.is_not_nil(shard.state.window)
  end)

  it("gives exact per-minute totals for a known input", function()
    local shard = testing.shard()
    local w, out = counting()
    local items, want = {}, {}
    for i = 0, 599 do -- ten minutes, three keys, one record a second
      local key = ({ "a", "b", "c" })[i % 3 + 1]
      items[#items + 1] = { key, i }
      local k = string.format("%s %d", key, math.floor(i / 60) * 60)
      want[k] = (want[k] or 0) + 1
    end
    local all = recs(items)
    for i = 1, #all, 37 do
      local batch = {}
      for j = i, math.min(i + 36, #all) do batch[#batch + 1] = all[j] end
      feed(w, shard, batch)
    end
    w:close(shard)
    local got = {}
    for _, line in ipairs(out) do
      local k, n = line:match("^(%S+ %S+) (%d+)$")
      assert.is_nil(got[k], "flushed twice: " .. k)
      got[k] = tonumber(n)
    end
    assert.are.same(want, got)
  end)

  it("refuses bad options, naming them", function()
    assert.has_error(function() window.tumbling { emit = function() end } end,
      "shardrun.window: size_ms must be a whole number of milliseconds above 0")
    assert.has_error(function() window.sliding { size_ms = 100, slide_ms = 30, emit = function() end } end,
      "shardrun.window: slide_ms must divide size_ms (a window starts every slide_ms)")
    assert.has_error(function() window.tumbling { size_ms = 100 } end, "shardrun.window: emit must be a function")
  end)
end)
