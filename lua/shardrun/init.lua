-- shardrun: the helpers a processor may require.
--
--   local shardrun = require "shardrun"
--   shardrun.version            -- "0.1.0", the runtime's version (VERSION file)
--   shardrun.json.decode(s)     -- = require "shardrun.json"
--   shardrun.record.copy(r)     -- = require "shardrun.record"
--   shardrun.window.tumbling{}  -- = require "shardrun.window" (windows flushed by onTimer)
--   shardrun.testing            -- = require "shardrun.testing" (for specs)
--
-- Submodules are loaded on first use, so `require "shardrun"` costs nothing
-- for the ones a script never touches. Requiring them directly is the same.
-- The processor contract itself (P.processRecords and the decisions) is
-- described in README.md, section "The Lua contract" (also `man shardrun`,
-- THE LUA CONTRACT), and testing it at the top of shardrun/testing.lua.
local require, rawset = require, rawset

local SUBMODULES = { json = true, record = true, testing = true, window = true }

local shardrun = { version = "0.1.0" }

return setmetatable(shardrun, {
  __index = function(t, k)
    if not SUBMODULES[k] then return nil end
    local m = require("shardrun." .. k)
    rawset(t, k, m)
    return m
  end,
})
