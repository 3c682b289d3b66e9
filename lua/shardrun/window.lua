-- shardrun.window: tumbling and sliding windows over a shard's records,
-- keyed, kept in shard.state, closed by time and flushed by onTimer.
--
--   local window = require "shardrun.window"
--   local per_minute = window.tumbling {
--     size_ms = 60000,
--     time = "arrival",             -- or function(r, value) return ms end (event time)
--     emit = function(shard, key, acc, start_ms, end_ms)
--       shard.emit("rollup", string.format("%s %d %d", key, start_ms, acc), key)
--     end,
--   }
--   function P.processRecords(records, shard)
--     for i = 1, #records do per_minute:add(shard, records[i], records[i].partitionKey) end
--     return per_minute:checkpoint(shard)
--   end
--   function P.onTimer(shard, now_ms) return per_minute:tick(shard, now_ms) end
--   function P.shardEnded(shard) per_minute:close(shard) return "checkpoint" end
--   function P.shutdownRequested(shard) per_minute:close(shard) return "checkpoint" end
--
-- window.tumbling(opts) / window.sliding(opts) -> a window set. opts:
--   size_ms      the window's length (required)
--   slide_ms     sliding only: a window starts every slide_ms (size_ms a
--                multiple of it); a record counts in every window it falls in
--   time         "arrival" (default: the record's approximateArrivalTimestamp)
--                or function(record, value) -> ms (event time)
--   lateness_ms  (default 0) how far behind the newest time seen a record may
--                be and still count: a window closes once the newest time
--                seen passes its end by lateness_ms
--   idle_ms      (default size_ms) onTimer closes every open window when no
--                record was added for this long (wall clock): the last
--                windows of a quiet shard are flushed too
--   init         function(key, start_ms) -> a new window's value (default 0)
--   add          function(acc, value, record) -> the new value (default acc + 1)
--   emit         function(shard, key, acc, start_ms, end_ms): a closed
--                window's result for one key, in end, then key order;
--                typically shard.emit(...) (required)
--   late         function(shard, record, key, value): a record whose every
--                window is closed already (default: counted in
--                shard.state[name].late, dropped)
--   name         its place in shard.state (default "window"; give each window
--                set of a script its own)
--
-- w:add(shard, record [, key [, value]]) puts a record in its window(s)
--   (key default: its partition key).
-- w:checkpoint(shard) closes the windows time has passed, and returns the
--   decision for processRecords: "checkpoint" when no window is open (every
--   record is flushed), else nil (records in open windows must not be
--   checkpointed: a restart would lose them). Return it from processRecords.
-- w:tick(shard, now_ms) closes windows (and, idle for idle_ms, all of them)
--   and returns the decision for onTimer: "checkpoint", or the position just
--   before the first record of the oldest open window, or nil. The runtime
--   writes it only after every record emitted before it is acknowledged.
-- w:close(shard) closes and flushes every window (shardEnded, shutdownRequested).
--
-- At least once, as the rest of shardrun: after a crash, the records after
-- the last checkpoint come again and a window flushed but not checkpointed is
-- flushed again (the same result for in-order time: key it on key and
-- start_ms to make writes idempotent). With out-of-order event time, a
-- record that came after a window's first records but belongs to an earlier
-- window that was flushed can, after a restart, flush that earlier window
-- again with only the late records in it.
local floor, huge, type, error, pairs, sort, tostring = math.floor, math.huge, type, error, pairs, table.sort,
  tostring

local window = {}
local mt = { __index = {} }
local W = mt.__index

local function default_init() return 0 end
local function default_add(acc) return acc + 1 end

local function new(opts, sliding)
  if type(opts) ~= "table" then error("shardrun.window: expected a table of options", 3) end
  local size = opts.size_ms
  if type(size) ~= "number" or size <= 0 or size ~= floor(size) then
    error("shardrun.window: size_ms must be a whole number of milliseconds above 0", 3)
  end
  local slide = sliding and opts.slide_ms or size
  if type(slide) ~= "number" or slide <= 0 or slide > size or size % slide ~= 0 then
    error("shardrun.window: slide_ms must divide size_ms (a window starts every slide_ms)", 3)
  end
  if type(opts.emit) ~= "function" then error("shardrun.window: emit must be a function", 3) end
  local time = opts.time or "arrival"
  if time ~= "arrival" and type(time) ~= "function" then
    error("shardrun.window: time must be \"arrival\" or a function(record, value) -> ms", 3)
  end
  return setmetatable({
    size = size,
    slide = slide,
    time = time,
    lateness = opts.lateness_ms or 0,
    idle = opts.idle_ms or size,
    init = opts.init or default_init,
    fold = opts.add or default_add,
    emit = opts.emit,
    late = opts.late,
    name = opts.name or "window",
  }, mt)
end

function window.tumbling(opts) return new(opts, false) end
function window.sliding(opts) return new(opts, true) end

-- This window set's state in shard.state (made on first use, so it starts
-- empty on a new owner, as shard.state does).
local function state(w, shard)
  local st = shard.state[w.name]
  if not st then
    st = { windows = {}, open = 0, newest = -huge, closed_to = -huge, last = nil, n = 0, late = 0, added = false }
    shard.state[w.name] = st
  end
  return st
end

function W:add(shard, r, key, value)
  local st = state(self, shard)
  if key == nil then key = r.partitionKey end
  local t
  if self.time == "arrival" then t = r.approximateArrivalTimestamp else t = self.time(r, value) end
  if type(t) ~= "number" then
    error("shardrun.window: the time of record " .. tostring(r.sequenceNumber) .. " is not a number (got a "
      .. type(t) .. ")", 2)
  end
  local before = st.last
  -- where a checkpoint may go without losing this record: just before it
  st.last = { sequenceNumber = r.sequenceNumber, subSequenceNumber = r.subSequenceNumber or 0 }
  st.n = st.n + 1
  st.added = true
  if t > st.newest then st.newest = t end
  local counted = false
  local first = floor(t / self.slide) * self.slide
  for start = first, t - self.size + 1, -self.slide do
    local stop = start + self.size
    if stop > st.closed_to then
      local win = st.windows[start]
      if not win then
        win = { start = start, stop = stop, keys = {}, after = before, order = st.n }
        st.windows[start] = win
        st.open = st.open + 1
      end
      local acc = win.keys[key]
      if acc == nil then acc = self.init(key, start) end
      win.keys[key] = self.fold(acc, value, r)
      counted = true
    end
  end
  if not counted then
    st.late = st.late + 1
    if self.late then self.late(shard, r, key, value) end
  end
end

local function by_key(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- Flushes and forgets the windows that end at or before `upto`.
local function close_upto(self, shard, st, upto)
  local done = {}
  for _, win in pairs(st.windows) do
    if win.stop <= upto then done[#done + 1] = win end
  end
  if #done == 0 then return end
  sort(done, function(a, b) return a.stop < b.stop end)
  for _, win in ipairs(done) do
    local keys = {}
    for k in pairs(win.keys) do keys[#keys + 1] = k end
    sort(keys, by_key)
    for _, k in ipairs(keys) do self.emit(shard, k, win.keys[k], win.start, win.stop) end
    st.windows[win.start] = nil
    st.open = st.open - 1
    if win.stop > st.closed_to then st.closed_to = win.stop end
  end
end

-- The decision: everything, or before the oldest open window's first record.
local function decision(st, all_ok)
  if st.open == 0 then return "checkpoint" end -- every record added is flushed (or was late)
  if all_ok then return nil end
  local oldest
  for _, win in pairs(st.windows) do
    if not oldest or win.order < oldest.order then oldest = win end
  end
  return oldest.after -- nil when its first record was the first this state saw
end

function W:checkpoint(shard)
  local st = state(self, shard)
  close_upto(self, shard, st, st.newest - self.lateness)
  return decision(st, true)
end

function W:tick(shard, now_ms)
  local st = state(self, shard)
  if st.added or not st.active_ms then
    st.active_ms = now_ms
    st.added = false
  end
  local upto = st.newest - self.lateness
  if st.open > 0 and now_ms - st.active_ms >= self.idle then upto = huge end
  close_upto(self, shard, st, upto)
  return decision(st, false)
end

function W:close(shard)
  local st = state(self, shard)
  close_upto(self, shard, st, huge)
end

return window
