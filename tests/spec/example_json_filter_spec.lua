-- examples/json-filter/filter.lua: keeps JSON records with level == "error";
-- invalid records are counted, written to a rejects file and reported, and
-- do not fail the batch.
local testing = require "shardrun.testing"
local json = require "shardrun.json"

local SCRIPT = "examples/json-filter/filter.lua"
local real_stderr = io.stderr

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'") == 0)
  return p
end

local function lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for l in f:lines() do out[#out + 1] = l end
  f:close()
  return out
end

describe("examples/json-filter", function()
  local dir, shard, P, stderr

  before_each(function()
    dir = tmpdir()
    shard = testing.shard { id = "shardId-000000000003", stream = "events" }
    P = testing.load(SCRIPT)
    P.settings.out_dir = dir
    -- capture what the filter reports on stderr
    stderr = {}
    io.stderr = { write = function(_, ...) for _, s in ipairs { ... } do stderr[#stderr + 1] = s end end }
    assert.are.same({ kind = "none" }, testing.lifecycle(P, "initialize", shard))
  end)
  after_each(function()
    io.stderr = real_stderr
    testing.lifecycle(P, "shutdownRequested", shard)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function matches() return lines(dir .. "/events.shardId-000000000003.matches.jsonl") end
  local function rejects()
    local out = {}
    for _, l in ipairs(lines(dir .. "/events.shardId-000000000003.rejects.jsonl")) do out[#out + 1] = json.decode(l) end
    return out
  end

  it("keeps only the matching records, as their original JSON text", function()
    local d = testing.process(P, {
      '{"level":"error","msg":"disk full","id":12345678901234567890}',
      '{"level":"info","msg":"ok"}',
      '{"msg":"no level"}',
      '{"level":"ERROR"}',
      '{"level": "error", "n": 2}',
    }, shard)
    assert.are.equal("checkpoint", d.kind)
    assert.are.same({ '{"level":"error","msg":"disk full","id":12345678901234567890}',
      '{"level": "error", "n": 2}' }, matches())
    assert.are.same({}, rejects())
    assert.are.equal(5, shard.state.seen)
    assert.are.equal(2, shard.state.kept)
    assert.are.equal(0, shard.state.rejected)
  end)

  it("writes a multi-line JSON record as one line", function()
    testing.process(P, { '{\n  "level": "error"\r\n}' }, shard)
    local m = matches()
    assert.are.equal(1, #m)
    assert.are.equal("error", json.decode(m[1]).level)
  end)

  it("uses the condition from its settings", function()
    P.settings.field, P.settings.value = "status", 500
    testing.process(P, { '{"status":500}', '{"status":200}', '{"level":"error"}' }, shard)
    assert.are.same({ '{"status":500}' }, matches())
  end)

  it("skips invalid records without failing the batch, but writes each to the rejects file", function()
    local recs = testing.records { "not json", '{"level":"error"}', "42", "nul\0\255 bytes", '{"a":' }
    local d = testing.process(P, recs, shard)
    assert.are.equal("checkpoint", d.kind)
    assert.are.same({ '{"level":"error"}' }, matches())
    local r = rejects()
    assert.are.equal(4, #r)
    assert.are.equal(4, shard.state.rejected)
    assert.are.equal("not json", r[1].data)
    assert.are.equal(recs[1].sequenceNumber, r[1].sequenceNumber)
    assert.are.equal("events", r[1].stream)
    assert.are.equal(shard.id, r[1].shard)
    assert.are.equal(recs[1].partitionKey, r[1].partitionKey)
    assert.matches("^json: ", r[1].error)
    assert.are.equal("42", r[2].data)
    assert.matches("not a JSON object", r[2].error)
    -- bytes that are not UTF-8 are kept losslessly, as hex
    assert.is_nil(r[3].data)
    assert.are.equal("nul\0\255 bytes", (r[3].data_hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)))
    assert.are.equal("not valid UTF-8", r[3].error)
    assert.are.equal('{"a":', r[4].data)
  end)

  it("reports rejects with one key=value line per batch on stderr", function()
    local recs = testing.records { "bad", "worse" }
    testing.process(P, recs, shard)
    local out = table.concat(stderr)
    assert.matches("level=warn event=json_filter_rejected stream=events shard=shardId%-000000000003 count=2", out)
    assert.matches("first_seq=" .. recs[1].sequenceNumber, out, 1, true)
    local _, n = out:gsub("\n", "")
    assert.are.equal(1, n)
  end)

  it("reports nothing for a clean batch", function()
    testing.process(P, { '{"level":"info"}' }, shard)
    assert.are.same({}, stderr)
  end)

  it("appends across batches and flushes before each checkpoint", function()
    testing.process(P, { '{"level":"error","n":1}' }, shard)
    assert.are.equal(1, #matches()) -- readable before shutdown: flushed
    testing.process(P, testing.records({ '{"level":"error","n":2}' }, { start = 2 }), shard)
    assert.are.equal(2, #matches())
  end)

  it("checkpoints on shutdownRequested and shardEnded", function()
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shutdownRequested", shard))
    assert.are.same({ kind = "checkpoint" }, testing.lifecycle(P, "shardEnded", shard))
  end)
end)
