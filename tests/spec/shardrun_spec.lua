-- shardrun (init.lua): version and lazily loaded submodules.
describe("shardrun", function()
  local shardrun = require "shardrun"

  it("reports the version in the VERSION file", function()
    local f = assert(io.open("VERSION", "rb"))
    local v = f:read("*a"):match("^%s*(.-)%s*$")
    f:close()
    assert.are.equal(v, shardrun.version)
  end)

  it("re-exports json, record, window and testing as the submodules themselves", function()
    assert.are.equal(require "shardrun.json", shardrun.json)
    assert.are.equal(require "shardrun.record", shardrun.record)
    assert.are.equal(require "shardrun.window", shardrun.window)
    assert.are.equal(require "shardrun.testing", shardrun.testing)
  end)

  it("has nothing under other names (no runtime internals)", function()
    assert.is_nil(shardrun._host)
    assert.is_nil(shardrun.nope)
  end)
end)
