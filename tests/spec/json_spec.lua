-- shardrun.json: decode/encode over cjson, decode_safe, null, is_utf8.
local json = require "shardrun.json"

describe("shardrun.json", function()
  it("decodes objects, arrays and scalars", function()
    local v = json.decode('{"level":"error","n":3,"tags":["a","b"],"ok":true}')
    assert.are.same({ level = "error", n = 3, tags = { "a", "b" }, ok = true }, v)
    assert.are.equal(42, json.decode("42"))
    assert.are.equal("x", json.decode('"x"'))
  end)

  it("raises on invalid JSON in decode", function()
    assert.has_error(function() json.decode("{") end)
    assert.has_error(function() json.decode(nil) end, "json.decode: expected a string, got a nil")
  end)

  it("returns nil and a message from decode_safe instead of raising", function()
    local v, err = json.decode_safe("not json")
    assert.is_nil(v)
    assert.matches("^json: Expected value", err)
    v, err = json.decode_safe('{"a":1} trailing')
    assert.is_nil(v)
    assert.is_string(err)
    v, err = json.decode_safe(5)
    assert.is_nil(v)
    assert.are.equal("json: expected a string, got a number", err)
  end)

  it("decodes null to json.null, a truthy sentinel, never to nil", function()
    local v = json.decode('{"x":null}')
    assert.are.equal(json.null, v.x)
    assert.is_truthy(v.x)
    assert.is_true(json.is_null(v.x))
    assert.is_true(json.is_null(v.missing))
    assert.is_false(json.is_null(false))
    assert.are.equal(json.null, json.decode_safe("null"))
  end)

  it("encodes json.null as null and an empty table as {}", function()
    assert.are.equal('{"a":null}', json.encode({ a = json.null }))
    assert.are.equal("{}", json.encode({}))
    assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
  end)

  it("rejects NaN, Infinity and hex numbers (strict numbers)", function()
    assert.is_nil(json.decode_safe("NaN"))
    assert.is_nil(json.decode_safe("Infinity"))
    assert.is_nil(json.decode_safe("0x10"))
    assert.has_error(function() json.encode(0 / 0) end)
  end)

  it("encodes big integers with 14 significant digits (keep them as strings)", function()
    assert.are.equal("123456789012345", json.encode("123456789012345"):sub(2, -2))
    assert.are.equal("1.2345678901235e+15", json.encode(1234567890123456))
  end)

  it("escapes control characters, NUL included", function()
    assert.are.equal('"a\\u0000b\\n"', json.encode("a\0b\n"))
    assert.are.equal("a\0b\n", json.decode(json.encode("a\0b\n")))
  end)

  it("returns nil and a message from encode_safe instead of raising", function()
    local s, err = json.encode_safe({ f = function() end })
    assert.is_nil(s)
    assert.matches("^json: Cannot serialise function", err)
    assert.are.equal("[true]", json.encode_safe({ true }))
  end)

  it("uses its own cjson instance: its settings do not leak to cjson", function()
    local cjson = require "cjson"
    assert.is_not_nil(cjson.decode("NaN")) -- cjson's default still accepts it
    assert.is_nil(json.decode_safe("NaN"))
  end)

  describe("is_utf8", function()
    it("accepts ASCII and well-formed multi-byte sequences", function()
      assert.is_true(json.is_utf8(""))
      assert.is_true(json.is_utf8("plain ascii\0"))
      assert.is_true(json.is_utf8("h\195\169llo"))         -- é
      assert.is_true(json.is_utf8("\226\130\172"))          -- €
      assert.is_true(json.is_utf8("\240\159\152\128"))      -- U+1F600
      assert.is_true(json.is_utf8("\244\143\191\191"))      -- U+10FFFF
    end)
    it("rejects stray, truncated, overlong, surrogate and out-of-range bytes", function()
      assert.is_false(json.is_utf8("\255"))
      assert.is_false(json.is_utf8("\128"))                 -- continuation byte first
      assert.is_false(json.is_utf8("\195"))                 -- truncated
      assert.is_false(json.is_utf8("\226\130"))             -- truncated
      assert.is_false(json.is_utf8("\192\175"))             -- overlong '/'
      assert.is_false(json.is_utf8("\224\128\175"))         -- overlong
      assert.is_false(json.is_utf8("\237\160\128"))         -- surrogate U+D800
      assert.is_false(json.is_utf8("\244\144\128\128"))     -- above U+10FFFF
      assert.is_false(json.is_utf8("ok\195("))
    end)
  end)
end)
