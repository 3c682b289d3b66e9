-- shardrun.record: small helpers for the records a processor receives.
--
--   local record = require "shardrun.record"
--   keep[#keep + 1] = record.copy(r)          -- a plain table, safe beyond the batch
--   for line in record.lines(r) do ... end    -- the lines of r.data
--   if record.seq_compare(a, b) < 0 then ...  -- decimal sequence numbers, exactly
--
-- The records given to processRecords are views of the batch in C memory and
-- stop working when processRecords returns. record.copy(r) turns one into a
-- plain table with the five fields (data, partitionKey, sequenceNumber,
-- subSequenceNumber, approximateArrivalTimestamp); such a copy can still be
-- returned as a decision ({checkpoint = copy}) within the same batch, it is
-- matched by sequence and sub-sequence number.
--
-- Sequence numbers are decimal strings longer than a double's precision:
-- never tonumber() them; compare them with seq_compare.
local type, tostring, error = type, tostring, error
local find, sub = string.find, string.sub

local record = {}

-- Returns a plain table holding the five fields of r (which may be a batch
-- record or any table with those fields).
function record.copy(r)
  if type(r) ~= "table" then
    error("record.copy: expected a record, got a " .. type(r), 2)
  end
  return {
    data = r.data,
    partitionKey = r.partitionKey,
    sequenceNumber = r.sequenceNumber,
    subSequenceNumber = r.subSequenceNumber,
    approximateArrivalTimestamp = r.approximateArrivalTimestamp,
  }
end

-- Copies every record of a batch (or of records[first..last]).
function record.copy_all(records, first, last)
  local out = {}
  for i = first or 1, last or #records do
    out[#out + 1] = record.copy(records[i])
  end
  return out
end

-- Compares two decimal sequence number strings: -1, 0 or 1.
-- (Leading zeros are ignored; both must be strings of digits.)
function record.seq_compare(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or find(a, "%D") or find(b, "%D") or a == "" or b == "" then
    error("record.seq_compare: expected two decimal strings, got " .. tostring(a) .. " and " .. tostring(b), 2)
  end
  a = a:gsub("^0+(%d)", "%1")
  b = b:gsub("^0+(%d)", "%1")
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

-- Compares two records by (sequenceNumber, subSequenceNumber): -1, 0 or 1.
function record.compare(ra, rb)
  local c = record.seq_compare(ra.sequenceNumber, rb.sequenceNumber)
  if c ~= 0 then return c end
  local sa, sb = ra.subSequenceNumber or 0, rb.subSequenceNumber or 0
  if sa == sb then return 0 end
  return sa < sb and -1 or 1
end

-- Iterates over the lines of a string or of a record's data. Lines end with
-- "\n" or "\r\n" (the ending is not returned); a last line without an ending
-- is returned; an empty string has no lines.
function record.lines(x)
  local s = type(x) == "table" and x.data or x
  if type(s) ~= "string" then
    error("record.lines: expected a string or a record, got a " .. type(s), 2)
  end
  local pos, n = 1, #s
  return function()
    if pos > n then return nil end
    local nl = find(s, "\n", pos, true)
    local line
    if nl then
      line = sub(s, pos, nl - 1)
      pos = nl + 1
    else
      line = sub(s, pos)
      pos = n + 1
    end
    if sub(line, -1) == "\r" then line = sub(line, 1, -2) end
    return line
  end
end

return record
