-- moonws.dict: process-wide shared dictionaries (docs/reference.md), through
-- a live server. The fixture spec/services/dict/kv.lua runs the Lua chunk a
-- client sends, with the dictionaries `d` ("kv"), `small` ("small", 4K) and
-- `tiny` ("tiny", 1K) in scope, and answers with its results shown with
-- their types (integer:3, float:3.0, "str", nil, {a,b}).
local testing = require "moonws.testing"
local core = require "moonws.core"

local FIXTURE = "spec/services/dict"

local function ask(c, code)
  assert(c:send(code))
  local reply, kind = c:receive(5)
  assert.equal("text", kind, tostring(reply))
  return reply
end

-- Polls fn every 20 ms until it returns true, at most timeout seconds.
local function eventually(fn, timeout, what)
  local deadline = core.now() + (timeout or 5)
  while not fn() do
    assert(core.now() < deadline, what or "condition not reached in time")
    core.sleep(0.02)
  end
end

local function count_lines(srv, text)
  local n = 0
  for line in srv:log():gmatch("[^\n]+") do
    if line:find(text, 1, true) then n = n + 1 end
  end
  return n
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, content)
  local f = assert(io.open(path, "w"))
  f:write(content)
  f:close()
end

describe("moonws.dict", function()
  local srv, c

  setup(function()
    srv = testing.start{ dir = FIXTURE }
  end)

  teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  before_each(function()
    c = assert(srv:connect("/kv"))
  end)

  after_each(function()
    if c.open then c:close() end
  end)

  it("stores strings, integers, floats and booleans, and tells 3 from 3.0", function()
    assert.equal("true nil false", ask(c, 'return d:set("s", "hello")'))
    assert.equal('"hello"', ask(c, 'return d:get("s")'))
    ask(c, 'd:set("i", 3) d:set("f", 3.0) d:set("yes", true) d:set("no", false)')
    assert.equal("integer:3 float:3.0 true false nil",
                 ask(c, 'return d:get("i"), d:get("f"), d:get("yes"), d:get("no"), d:get("missing")'))
    -- Keys and values are bytes: NUL and all.
    ask(c, 'd:set("a\\0b", "x\\0y")')
    assert.equal('"x\\0y" nil', ask(c, 'return d:get("a\\0b"), d:get("a")'))
    -- A long value goes through the same get.
    assert.equal("integer:100000 true",
                 ask(c, 'd:set("long", ("z"):rep(100000)) local v = d:get("long") return #v, v == ("z"):rep(100000)'))
  end)

  it("adds only what is absent, replaces only what is present, deletes", function()
    assert.equal('true nil false', ask(c, 'return d:add("k1", 1)'))
    assert.equal('nil "exists"', ask(c, 'return d:add("k1", 2)'))
    assert.equal('integer:1', ask(c, 'return d:get("k1")'))
    assert.equal('nil "not found"', ask(c, 'return d:replace("k2", 1)'))
    assert.equal('true nil false integer:5', ask(c, 'local a, b, f = d:replace("k1", 5) return a, b, f, d:get("k1")'))
    assert.equal('true false nil', ask(c, 'return d:delete("k1"), d:delete("k1"), d:get("k1")'))
    -- set(key, nil) deletes too.
    assert.equal('nil', ask(c, 'd:set("k3", "x") d:set("k3", nil) return d:get("k3")'))
  end)

  it("incr: from init, exact integers, floats, and its failures", function()
    assert.equal('nil "not found"', ask(c, 'return d:incr("n1", 1)'))
    assert.equal('integer:11 nil false', ask(c, 'return d:incr("n1", 1, 10)'))
    assert.equal('integer:12', ask(c, 'return (d:incr("n1", 1, 10))'))
    assert.equal('float:12.5', ask(c, 'return (d:incr("n1", 0.5))'))
    assert.equal('nil "not a number"', ask(c, 'd:set("word", "5") return d:incr("word", 1)'))
    assert.equal('nil "integer overflow" integer:' .. math.maxinteger,
                 ask(c, 'd:set("big", math.maxinteger) local a, b = d:incr("big", 1) return a, b, d:get("big")'))
  end)

  it("ttl: seconds left, nil for none, expiry on the monotonic clock", function()
    ask(c, 'd:set("brief", "v", 0.3) d:set("lasting", "v")')
    local left = tonumber(ask(c, 'return d:ttl("brief")'):match("^float:(.*)$"))
    assert.is_true(left > 0 and left <= 0.3, tostring(left))
    assert.equal('nil', ask(c, 'return d:ttl("lasting")'))
    assert.equal('nil "not found"', ask(c, 'return d:ttl("absent")'))
    eventually(function() return ask(c, 'return d:get("brief")') == "nil" end, 5, "brief never expired")
    assert.equal('nil "not found"', ask(c, 'return d:ttl("brief")'))
    -- add on an expired key succeeds; expire() gives and takes a ttl.
    ask(c, 'd:set("gone", 1, 0.05)')
    eventually(function() return ask(c, 'return d:get("gone")') == "nil" end)
    assert.equal('true nil false', ask(c, 'return d:add("gone", 2)'))
    assert.equal('true nil', ask(c, 'return d:expire("gone", 100), d:expire("gone", 0) and d:ttl("gone")'))
  end)

  it("keys([max]): live keys, bounded", function()
    ask(c, 'for _, k in ipairs(d:keys(0)) do d:delete(k) end')
    ask(c, 'd:set("ka", 1) d:set("kb", 1) d:set("kc", 1, 0.05)')
    assert.equal('{ka,kb,kc}', ask(c, 'return d:keys()'))
    assert.equal('integer:1', ask(c, 'return #d:keys(1)'))
    eventually(function() return ask(c, 'return d:keys()') == "{ka,kb}" end)
    -- keys() leaves the expired entry where it is; flush_expired takes it.
    assert.equal("integer:1 integer:0", ask(c, 'return d:flush_expired(), d:flush_expired()'))
    ask(c, 'd:flush_all()')
    assert.equal('{} integer:0', ask(c, 'return d:keys(), d:used()'))
  end)

  it("is one dictionary for every service that names it", function()
    assert.equal(200, (srv:http("POST", "/other?key=shared", "from other")))
    assert.equal('"from other"', ask(c, 'return d:get("shared")'))
    ask(c, 'd:set("shared", "from kv")')
    local status, body = srv:http("GET", "/other?key=shared")
    assert.equal(200, status)
    assert.equal("from kv", body)
  end)

  it("raises for misuse: the connection closes 1011, the endpoint answers 500", function()
    c:send('d:set("k", {})')
    assert.equal(1011, (testing.until_close(c, 5)))
    assert.truthy(srv:wait_log("bad argument #2 to 'set' (values are strings, numbers or booleans)", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'd:incr("k", "1")')))
    assert.truthy(srv:wait_log("bad argument #2 to 'incr' (number expected, got string)", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'd:get(1)')))
    assert.truthy(srv:wait_log("bad argument #1 to 'get' (string expected, got number)", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'd:set("k", 1, -1)')))
    assert.truthy(srv:wait_log("a ttl is 0 (none) to 1e9 seconds", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'd:get(("k"):rep(65536))')))
    assert.truthy(srv:wait_log("a key is at most 65535 bytes", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'moonws.dict("bad name")')))
    assert.truthy(srv:wait_log("a dictionary's name is 1 to 64 letters", 5, true))
    assert.equal(500, (srv:http("POST", "/kv", 'moonws.dict("x", "10Q")')))
    assert.truthy(srv:wait_log("a capacity is a positive number of bytes", 5, true))
    -- Another client is still served.
    local c2 = assert(srv:connect("/kv"))
    assert.equal("integer:2", ask(c2, "return 1 + 1"))
    c2:close()
  end)

  it("evicts the least recently used entries past its capacity, and logs it once a second", function()
    assert.equal("integer:4096", ask(c, "return small:capacity()"))
    -- 100-byte values: each entry costs 64 + key + 100 bytes, so 4K holds 20-odd.
    local reply = ask(c, [[
      local forced = 0
      for i = 1, 200 do
        local ok, err, forcible = small:set("e" .. i, ("v"):rep(100))
        assert(ok, err)
        if forcible then forced = forced + 1 end
      end
      return forced, small:used() <= 4096, small:get("e1"), small:get("e200") ~= nil
    ]])
    local forced = tonumber(reply:match("^integer:(%d+)"))
    assert.is_true(forced > 150, reply)
    assert.matches(" true nil true$", reply)
    -- A get is a use: the oldest entry read survives the next eviction.
    assert.equal("true nil", ask(c, [[
      local oldest
      for _, k in ipairs(small:keys(0)) do oldest = k end
      small:get(oldest)
      small:set("one-more", ("v"):rep(100))
      return small:get(oldest) ~= nil, small:get("e" .. (tonumber(oldest:sub(2)) + 1))
    ]]))
    assert.truthy(srv:wait_log("dict small: full (4096 bytes): ", 5, true))
    -- Capacity accounting returns to zero.
    assert.equal("integer:0", ask(c, "for _, k in ipairs(small:keys(0)) do small:delete(k) end return small:used()"))
    -- A flood of evictions is one line per second at most.
    local started = core.now()
    local before = count_lines(srv, "dict small: full")
    for _ = 1, 20 do
      ask(c, 'for i = 1, 100 do small:set("f" .. i, ("w"):rep(100)) end')
    end
    local lines = count_lines(srv, "dict small: full") - before
    assert.is_true(lines <= math.ceil(core.now() - started) + 1, lines .. " lines")
    local c2 = assert(srv:connect("/kv"))
    assert.equal("integer:2", ask(c2, "return 1 + 1"))
    c2:close()
  end)

  it("refuses a value larger than the whole capacity with nil, \"no memory\"", function()
    assert.equal('true nil "no memory" "kept"',
                 ask(c, 'local ok = tiny:set("k", "kept") local a, b = tiny:set("k", ("x"):rep(2000)) return ok, a, b, tiny:get("k")'))
    assert.truthy(srv:wait_log("dict tiny: 1 value larger than its capacity (1024 bytes) refused", 5, true))
    assert.equal('nil "no memory"', ask(c, 'return tiny:incr(("k"):rep(1000), 1, 0)'))
  end)

  it("sums an incr from many connections exactly", function()
    local conns, per = 20, 100
    local cs = {}
    for i = 1, conns do cs[i] = assert(srv:connect("/kv")) end
    for _, cc in ipairs(cs) do
      for _ = 1, per do assert(cc:send('return (d:incr("hits", 1, 0))')) end
    end
    local seen, dup = {}, 0
    for _, cc in ipairs(cs) do
      for _ = 1, per do
        local reply = assert(cc:receive(10))
        local n = tonumber(reply:match("^integer:(%d+)$"))
        if seen[n] then dup = dup + 1 end
        seen[n] = true
      end
      cc:close()
    end
    assert.equal(0, dup)
    for n = 1, conns * per do assert.is_true(seen[n], "missing " .. n) end
    assert.equal("integer:" .. conns * per, ask(c, 'return d:get("hits")'))
  end)

  it("gives an undeclared name the default capacity until a capacity is asked for", function()
    assert.equal("integer:1048576", ask(c, 'return moonws.dict("later"):capacity()'))
    assert.equal("integer:2048", ask(c, 'return moonws.dict("later", "2K"):capacity()'))
    assert.equal("integer:2048", ask(c, 'return moonws.dict("later", 4096):capacity()'))
    assert.truthy(srv:wait_log("dict later keeps its capacity of 2048 bytes, not the 4096 asked for", 5, true))
    -- Said once per capacity asked for, not at every call.
    ask(c, 'return moonws.dict("later", 4096)')
    assert.equal(1, count_lines(srv, "dict later keeps its capacity"))
  end)
end)

describe("moonws.dict limits and declarations", function()
  it("raises past 64 dictionaries in the process", function()
    local srv = testing.start{ dir = FIXTURE }
    local c = assert(srv:connect("/kv"))
    -- kv, small and tiny exist already.
    c:send('for i = 1, 100 do moonws.dict("many" .. i) end')
    assert.equal(1011, (testing.until_close(c, 5)))
    assert.truthy(srv:wait_log("moonws.dict: at most 64 dictionaries in the process", 5, true))
    local c2 = assert(srv:connect("/kv"))
    assert.equal("integer:1", ask(c2, 'return #{moonws.dict("many1")}'))
    c2:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("takes its capacity from --dict before any service", function()
    local srv = testing.start{ dir = FIXTURE, args = { "--dict", "small=8K", "--dict", "ops=1M" } }
    local c = assert(srv:connect("/kv"))
    assert.equal("integer:8192 integer:1048576", ask(c, 'return small:capacity(), moonws.dict("ops"):capacity()'))
    assert.truthy(srv:wait_log("dict small keeps its capacity of 8192 bytes, not the 4096 asked for", 5, true))
    c:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("refuses a bad --dict with usage and exit 2", function()
    local bin = os.getenv("MOONWS_BIN") or "build/moonws"
    for _, arg in ipairs({ "small", "small=", "small=0", "small=10Q", "=1K", "bad name=1K" }) do
      local err = os.tmpname()
      local _, _, code = os.execute(("%s --dict '%s' %s 2>%s"):format(bin, arg, FIXTURE, err))
      local text = read(err)
      os.remove(err)
      assert.equal(2, code, arg)
      assert.matches("bad --dict", text, 1, true)
      assert.matches("usage: moonws", text, 1, true)
    end
  end)

  it("keeps its entries across a hot reload of the service", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local source = read(FIXTURE .. "/kv.lua")
    write(dir .. "/kv.lua", source)
    local srv = testing.start{ dir = dir }
    local c = assert(srv:connect("/kv"))
    ask(c, 'd:set("kept", "across reloads") d:incr("reloads", 1, 0) small:set("s", 1)')
    write(dir .. "/kv.lua", source:gsub("local kv = {", "local kv = { version = 2,", 1))
    assert.truthy(srv:wait_log("reloaded kv.lua", 5, true))
    local c2 = assert(srv:connect("/kv"))
    assert.equal('"across reloads" integer:2 integer:1 integer:4096',
                 ask(c2, 'return d:get("kept"), (d:incr("reloads", 1)), small:get("s"), small:capacity()'))
    -- The connection that was open kept working, through the new version.
    assert.equal('"across reloads"', ask(c, 'return d:get("kept")'))
    c:close()
    c2:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)
end)
