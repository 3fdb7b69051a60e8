-- The limits an operator may tune by flag (docs/reference.md, "Command
-- line"): each one performed, a second client still served, exit 0 after.
local testing = require "moonws.testing"
local core = require "moonws.core"

local DIR = "spec/services/tunables"

-- A second client is still served: an echo through /t.
local function still_serves(srv)
  local c = assert(srv:connect("/t"))
  assert(c:send("still here"))
  assert.equal("still here", c:receive(5))
  c:close(1000)
end

local function raw_status(srv, request)
  local s = assert(srv:tcp(5))
  assert(s:send(request))
  local data = s:receiveAll(5) or ""
  s:close()
  return tonumber(data:match("^HTTP/1%.1 (%d+)"))
end

describe("--handshake-timeout", function()
  it("drops a silent socket after that many seconds", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--handshake-timeout", "1" } }
    local s = assert(srv:tcp(5))
    -- The default (10 s) would outlast this wait.
    local data, err = s:receive(4)
    assert.is_nil(data)
    assert.equal("closed", err)
    s:close()
    assert(srv:wait_log("request timed out", 2, true))
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)
end)

describe("--max-header-size", function()
  it("refuses a larger head with 431 and takes a smaller one", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-header-size", "2K" } }
    local big = "GET /nope HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(3000) .. "\r\n\r\n"
    assert.equal(431, raw_status(srv, big))
    local fits = "GET /nope HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(1500) .. "\r\n\r\n"
    assert.equal(404, raw_status(srv, fits))
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)

  it("can be raised past the default 8K", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-header-size", "32K" } }
    local fits = "GET /nope HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(20000) .. "\r\n\r\n"
    assert.equal(404, raw_status(srv, fits))
    local c = assert(srv:connect("/t", { headers = { ["X-Big"] = ("a"):rep(20000) } }))
    assert(c:send("big head"))
    assert.equal("big head", c:receive(5))
    c:close(1000)
    local big = "GET /nope HTTP/1.1\r\nHost: a\r\nX-Big: " .. ("a"):rep(40000) .. "\r\n\r\n"
    assert.equal(431, raw_status(srv, big))
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)

  it("keeps the request target at 8 KiB whatever it says: 400 past it", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-header-size", "32K" } }
    local path = "/" .. ("p"):rep(8000)
    assert.equal(404, raw_status(srv, "GET " .. path .. " HTTP/1.1\r\nHost: a\r\n\r\n"))
    path = "/" .. ("p"):rep(9000)
    assert.equal(400, raw_status(srv, "GET " .. path .. " HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert.equal(400, raw_status(srv, "GET /x?" .. ("q"):rep(9000) .. " HTTP/1.1\r\nHost: a\r\n\r\n"))
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)
end)

describe("--max-body-size", function()
  it("refuses a larger body with 413 and takes a smaller one", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-body-size", "100" } }
    assert.equal(413, (srv:http("POST", "/t/echo", ("b"):rep(101))))
    local status, body = srv:http("POST", "/t/echo", ("b"):rep(100))
    assert.equal(200, status)
    assert.equal(("b"):rep(100), body)
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)

  it("can be raised past the default 1M", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-body-size", "2M" } }
    local status, body = srv:http("POST", "/t/echo", ("b"):rep(1500000), nil, 10)
    assert.equal(200, status)
    assert.equal(1500000, #body)
    assert.equal(0, srv:stop())
  end)
end)

describe("--idle-timeout", function()
  it("closes a silent WebSocket 1001 in a service that sets no idle_timeout", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--idle-timeout", "1" } }
    local c = assert(srv:connect("/t"))
    -- Within idle_timeout + the 0.5 s sweep; the default (120 s) would not.
    local code, reason = testing.until_close(c, 4)
    assert.equal(1001, code)
    assert.equal("idle timeout", reason)
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)
end)

describe("--close-timeout and close_timeout", function()
  local function unanswered(srv, path)
    local c = assert(srv:connect(path))
    assert(c:send("bye"))
    -- The client does not read, so the server's close stays unanswered:
    -- it gives up after the close timeout (the default, 5 s, would not
    -- be over by then).
    assert(srv:wait_log("close not answered in time", 3, true))
    c:close()
  end

  it("drops a client that does not answer the server's close", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--close-timeout", "1" } }
    unanswered(srv, "/t")
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)

  it("is a service's own with close_timeout", function()
    local srv <close> = testing.start{ dir = DIR }
    unanswered(srv, "/t/quick")
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)
end)

describe("--max-backpressure", function()
  it("closes 1008 a client with more queued in a service that sets none", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--max-backpressure", "1000" },
                                       metrics = true }
    -- A client that reads nothing until the server has given up on it (its
    -- kernel takes 16 KB): the server's kernel fills, then its queue grows
    -- past 1000 bytes. (A client reading all along may keep up with the
    -- flood: long messages go to the kernel at once.)
    local c = assert(srv:connect("/t", { rcvbuf = 16384 }))
    assert(c:send("flood"))
    assert(srv:wait_log("over max_backpressure: closing 1008", 5, true))
    local code = testing.until_close(c, 5)
    assert.equal(1008, code)
    -- and counted
    local _, text = srv:scrape()
    assert.matches('moonws_backpressure_closes_total{path="/t"} 1\n', text, 1, true)
    assert.matches('moonws_closes_total{path="/t",code="1008"} 1\n', text, 1, true)
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)
end)

describe("--tls-min-version", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    assert(os.execute(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                       .. "-nodes -keyout k.pem -out c.pem -days 1 -subj /CN=localhost 2>/dev/null")
                      :format(dir)))
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  -- openssl s_client limited to one version: true when the handshake ended
  -- with a session. (Our client cannot be held to TLS 1.2.)
  local function handshake(port, version)
    local p = io.popen(("openssl s_client -connect 127.0.0.1:%d -%s </dev/null 2>&1")
                       :format(port, version))
    local out = p:read("a")
    p:close()
    return out:find("Cipher is %S+") ~= nil and not out:find("Cipher is %(NONE%)"), out
  end

  it("1.3 refuses a TLS 1.2 client and takes a TLS 1.3 one", function()
    local srv <close> = testing.start{ dir = DIR, args = { "--tls-min-version", "1.3" },
                                       tls = { cert = dir .. "/c.pem", key = dir .. "/k.pem" } }
    local ok12, out12 = handshake(srv.tls_port, "tls1_2")
    assert.is_false(ok12, out12)
    local ok13, out13 = handshake(srv.tls_port, "tls1_3")
    assert.is_true(ok13, out13)
    still_serves(srv)
    assert.equal(0, srv:stop())
  end)

  it("defaults to 1.2: a TLS 1.2 client is served", function()
    local srv <close> = testing.start{ dir = DIR, tls = { cert = dir .. "/c.pem", key = dir .. "/k.pem" } }
    local ok12, out12 = handshake(srv.tls_port, "tls1_2")
    assert.is_true(ok12, out12)
    assert.equal(0, srv:stop())
  end)
end)

describe("bad values of the tunable flags", function()
  local bin = testing.find_bin()
  for _, args in ipairs{
    { "--idle-timeout", "-1" }, { "--idle-timeout", "soon" },
    { "--handshake-timeout", "0" }, { "--handshake-timeout", "x" },
    { "--close-timeout", "0" }, { "--close-timeout", "4000" },
    { "--max-header-size", "100" }, { "--max-header-size", "65K" },
    { "--max-body-size", "2G" }, { "--max-body-size", "lots" },
    { "--max-backpressure", "0" }, { "--max-backpressure", "1Q" },
    { "--tls-min-version", "1.1" },
  } do
    it(table.concat(args, " ") .. " exits 2 with usage", function()
      local p = io.popen(("%s %s %s %s 2>&1; echo \"exit=$?\""):format(bin, args[1], args[2], DIR))
      local out = p:read("a")
      p:close()
      assert.matches("exit=2", out, 1, true)
      assert.matches("moonws: bad " .. args[1], out, 1, true)
      assert.matches("usage: moonws", out, 1, true)
    end)
  end

  it("a service with a bad close_timeout is refused with file:line", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/bad.lua", "w"))
    f:write('return {\n  path = "/bad",\n  close_timeout = 0,\n  onText = function() end,\n}\n')
    f:close()
    local p = io.popen(("%s --check %s 2>&1"):format(bin, dir))
    local out = p:read("a")
    p:close()
    os.execute("rm -rf " .. dir)
    assert.matches("bad.lua:3:", out, 1, true)
    assert.matches("close_timeout", out, 1, true)
  end)
end)
