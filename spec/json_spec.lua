-- JSON (moonws.json, onMessage binding, table bodies and sends): integers
-- stay integers, floats stay floats, [] and {} are told apart.
local testing = require "moonws.testing"
local cjson = require "cjson"

describe("JSON", function()
  local srv
  -- One worker: /types/who lists moonws.connections, which are the
  -- answering worker's own.
  lazy_setup(function() srv = testing.start{ dir = "spec/services/json", workers = 1 } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  local function roundtrip(text)
    local status, body = srv:http("POST", "/types/roundtrip", text)
    assert.equal(200, status)
    return body
  end

  local function encode(expr)
    local status, body = srv:http("POST", "/types/encode", expr)
    assert.equal(200, status)
    return body
  end

  it("binds numbers without a fraction as integers, others as floats", function()
    local c = assert(srv:connect("/types"))
    c:send('{"n": 7, "neg": -3, "f": 7.5, "z": 7.0, "e": 1e2, "big": 9007199254740993, ' ..
      '"max": 9223372036854775807, "min": -9223372036854775808, "huge": 123456789012345678901234}')
    local got = cjson.decode((c:receive(2)))
    assert.same({ n = "integer", n_value = "7", neg = "integer", neg_value = "-3", f = "float",
      z = "float", e = "float", big = "integer", big_value = "9007199254740993",
      max = "integer", max_value = "9223372036854775807", min = "integer",
      min_value = "-9223372036854775808", huge = "float" }, got)
    c:close()
  end)

  it("encodes integers exactly and floats so that they read back as floats", function()
    assert.equal("9007199254740993", roundtrip("9007199254740993"))
    assert.equal("123456789012345", roundtrip("123456789012345"))
    assert.equal("0.1", roundtrip("0.1"))
    assert.equal("7.0", roundtrip("7.0"))
    assert.equal("-2.5e-300", roundtrip("-2.5e-300"))
    assert.equal("1e+20", roundtrip("1e20"))
    assert.equal("[1,2.5,\"x\",true,null]", roundtrip('[1, 2.5, "x", true, null]'))
  end)

  it("keeps [] and {} apart, and moonws.json.array makes an empty array", function()
    assert.equal("[]", roundtrip("[]"))
    assert.equal("{}", roundtrip("{}"))
    assert.equal('{"a":[]}', roundtrip('{"a": []}'))
    assert.equal('[[],{}]', roundtrip('[[], {}]'))
    assert.equal("ok []", encode("array()"))
    assert.equal("ok [1,2]", encode("array({1, 2})"))
    assert.equal("ok {}", encode("{}"))
    local status, body, h = srv:http("GET", "/types/who")
    assert.equal(200, status)
    assert.equal("[]", body)
    assert.equal("application/json", h["content-type"])
    assert.equal("{}", select(2, srv:http("GET", "/types/empty-object")))
    local c = assert(srv:connect("/types"))
    local ids = cjson.decode((select(2, srv:http("GET", "/types/who"))))
    assert.equal(1, #ids)
    c:close()
  end)

  it("decodes escapes and surrogate pairs, and refuses what is not JSON", function()
    assert.equal('"a\\"b\\\\c\\n\\u0001😀é"', roundtrip('"a\\"b\\\\c\\n\\u0001\\ud83d\\ude00\\u00e9"'))
    for _, bad in ipairs({ "", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\ud800\"", "[1] x",
                           "nul", "\"tab\there\"", "{1: 2}" }) do
      local status, body = srv:http("POST", "/types/roundtrip", bad)
      assert.equal(400, status, bad)
      assert.matches("^JSON: ", body)
    end
  end)

  it("refuses to encode what JSON cannot hold, with the reason", function()
    assert.matches("^error .*cannot encode a function", encode("{ f = function() end }"))
    assert.matches("^error .*not valid UTF%-8", encode("{ s = '\\255' }"))
    assert.matches("^error .*inf or nan", encode("{ 1/0 }"))
    assert.matches("^error .*nested too deep", encode("(function() local t = {} t.t = t return t end)()"))
    assert.equal('ok {"1":"a","3":"b"}', encode("{ [1] = 'a', [3] = 'b' }"):gsub('"3":"b","1":"a"', '"1":"a","3":"b"'))
    assert.equal("ok null", encode("null"))
  end)

  it("limits nesting when decoding", function()
    local status, body = srv:http("POST", "/types/roundtrip", string.rep("[", 300) .. string.rep("]", 300))
    assert.equal(400, status)
    assert.matches("nested too deep", body)
    assert.equal(200, (srv:http("POST", "/types/roundtrip", string.rep("[", 200) .. string.rep("]", 200))))
    -- a message nested too deep for onMessage: close 1003, others go on
    local c, other = assert(srv:connect("/types")), assert(srv:connect("/types"))
    c:send(string.rep("[", 100000))
    assert.equal(1003, (testing.until_close(c, 2)))
    assert(srv:wait_log("message is not valid JSON: JSON: nested too deep", 2, true))
    other:send('{"n": 1}')
    assert.same({ n = "integer", n_value = "1" }, cjson.decode((other:receive(2))))
    other:close()
  end)
end)
