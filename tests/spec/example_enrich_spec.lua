-- examples/enrich/enrich.lua: decodes, filters, enriches and emits each kept
-- event to the "enriched" output, keyed by user, naming its input record.
local testing = require "shardrun.testing"
local json = require "shardrun.json"

local SCRIPT = "examples/enrich/enrich.lua"

describe("examples/enrich", function()
  local P, shard

  before_each(function()
    P = testing.load(SCRIPT)
    shard = testing.shard { id = "shardId-000000000001", stream = "events", outputs = { "enriched" } }
  end)

  local function emitted()
    local out = {}
    for _, e in ipairs(testing.emitted(shard)) do
      assert.are.equal("enriched", e.output)
      local ev = json.decode(e.data)
      assert.are.equal(ev.user, e.partitionKey) -- one user's events stay in order downstream
      out[#out + 1] = ev
    end
    return out
  end

  it("emits each kept event with its tier and its input record, and checkpoints the batch", function()
    local recs = testing.records {
      '{"user":"u-1","action":"buy","amount":3}',
      '{"user":"u-7","action":"view"}',
    }
    assert.are.equal("checkpoint", testing.process(P, recs, shard).kind)
    local out = emitted()
    assert.are.equal(2, #out)
    assert.are.same({ user = "u-1", action = "buy", amount = 3, tier = "gold",
      source = { stream = "events", shard = "shardId-000000000001", sequenceNumber = recs[1].sequenceNumber,
        subSequenceNumber = 0 } }, out[1])
    assert.are.equal("standard", out[2].tier)
  end)

  it("drops heartbeats and skips what is not an event, counting both", function()
    local d = testing.process(P, { '{"user":"u-1","action":"heartbeat"}', "not json", "[1,2]", '{"action":"buy"}',
      '{"user":"u-2","action":"buy"}' }, shard)
    assert.are.equal("checkpoint", d.kind)
    local out = emitted()
    assert.are.equal(1, #out)
    assert.are.equal("silver", out[1].tier)
    assert.are.equal(1, shard.state.kept)
    assert.are.equal(1, shard.state.dropped)
    assert.are.equal(3, shard.state.rejected)
  end)

  it("emits in input order, so each user's events keep their order", function()
    local lines = {}
    for i = 1, 20 do lines[i] = json.encode { user = "u-" .. (i % 3), n = i } end
    testing.process(P, lines, shard)
    local last = {}
    for _, ev in ipairs(emitted()) do
      assert.is_true((last[ev.user] or 0) < ev.n)
      last[ev.user] = ev.n
    end
  end)

  it("uses the output its settings name", function()
    P.settings.output = "other"
    local d = testing.process(P, { '{"user":"u-1"}' }, shard)
    assert.are.equal("error", d.kind)
    assert.matches('no output named "other"', d.error)
  end)
end)
