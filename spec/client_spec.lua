-- The Lua client's options: strict names, credentials, cookies, a protocol
-- given as a string, the message of a refused upgrade, and reconnection.
local testing = require "moonws.testing"
local client = require "moonws.client"
local cjson = require "cjson"

describe("the client", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "spec/services/client" } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("refuses unknown option names, naming them", function()
    local url = srv.url .. "/echo"
    local ok, err = pcall(client.connect, url, { timout = 1 })
    assert.is_false(ok)
    assert.matches("unknown option `timout`", err, 1, true)
    ok, err = pcall(client.connect, url, { tls = { verfy = false } })
    assert.matches("unknown tls option `verfy`", err, 1, true)
    ok, err = pcall(client.connect, url, { retry = { cout = 2 } })
    assert.matches("unknown retry option `cout`", err, 1, true)
    ok, err = pcall(client.connect, url, { reconnect = { interval = 1, tries = 2 } })
    assert.matches("unknown reconnect option `tries`", err, 1, true)
    ok, err = pcall(client.connect, url, { compression = { window = 9 } })
    assert.matches("unknown compression option `window`", err, 1, true)
    ok, err = pcall(client.http, "GET", srv.http_url .. "/echo", nil, nil, 1, { cafile = "x" })
    assert.matches("unknown tls option `cafile`", err, 1, true)
    ok, err = pcall(client.tcp, "127.0.0.1", srv.port, 1, { sni = "x" })
    assert.matches("unknown tls option `sni`", err, 1, true)
  end)

  it("takes protocols as one name or a list", function()
    local c = assert(srv:connect("/echo", { protocols = "b" }))
    assert.equal("b", c.protocol)
    c:close()
    c = assert(srv:connect("/echo", { protocols = { "x", "a" } }))
    assert.equal("a", c.protocol)
    c:close()
  end)

  it("sends bearer or basic credentials and cookies", function()
    local c = assert(srv:connect("/creds", { auth = { bearer = "tok.en.x" }, cookies = { b = "2", a = "1" } }))
    assert.same({ authorization = "Bearer tok.en.x", cookie = "a=1; b=2" }, cjson.decode((c:receive(2))))
    c:close()
    c = assert(srv:connect("/creds", { auth = { basic = { "ann", "s3cret:x" } } }))
    assert.same({ authorization = "Basic YW5uOnMzY3JldDp4", cookie = "" }, cjson.decode((c:receive(2))))
    c:close()
    assert.is_false(pcall(client.connect, srv.url .. "/creds", { auth = { token = "x" } }))
  end)

  it("reports a refused upgrade with its status and the server's body", function()
    local c, err, status = srv:connect("/refuse?who=bo")
    assert.is_nil(c)
    assert.equal(403, status)
    assert.equal("the server refused the upgrade: HTTP 403 Forbidden: go away, bo", err)
    c, err, status = srv:connect("/nothing-here")
    assert.equal(404, status)
    assert.equal("the server refused the upgrade: HTTP 404 Not Found: 404 Not Found: no WebSocket " ..
      "service at this path", err)
  end)
end)

-- Stops srv while c answers its close at once (c:pump reads it and
-- replies), so the server need not wait out its grace period.
local function stop(srv, c)
  local core = require "moonws.core"
  srv:signal("TERM")
  local deadline = core.now() + 5
  while c:pump() and core.now() < deadline do core.sleep(0.01) end
  assert.equal(0, srv:stop())
  srv:cleanup()
end

describe("a reconnecting client", function()
  it("comes back to a new server on the same port, on receive and on send", function()
    local srv = testing.start{ dir = "spec/services/client" }
    local port = srv.port
    local hooks = 0
    local c
    c = assert(srv:connect("/echo", {
      protocols = "a",
      reconnect = { count = 40, interval = 0.05, backoff = 1.5, max_interval = 0.25 },
      on_reconnect = function(cc) hooks = hooks + 1; assert.equal(c, cc) end,
    }))
    c:send("one")
    assert.equal("one", (c:receive(2)))
    assert.equal(0, c.reconnects)
    stop(srv, c)
    local function again()
      return testing.start{ dir = "spec/services/client", args = { "-l", "127.0.0.1:" .. port },
                            listeners = 2 }
    end
    srv = again()
    -- receive hears the old server's 1001, connects again and goes on waiting
    assert.same({ nil, "timeout" }, { c:receive(0.5) })
    assert.equal(1, c.reconnects)
    assert.equal(1, hooks)
    c:send("protocol")
    assert.equal("a", (c:receive(2)))
    stop(srv, c)
    srv = again()
    -- send finds the connection over before it writes
    assert(c:send("two"))
    assert.equal("two", (c:receive(2)))
    assert.equal(2, c.reconnects)
    assert.equal(2, hooks)
    assert.equal(1000, c:close())
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("gives up after its attempts and returns the error", function()
    local srv = testing.start{ dir = "spec/services/client" }
    local c = assert(srv:connect("/echo", { reconnect = { count = 2, interval = 0.01 } }))
    stop(srv, c)
    -- no server to come back to: the close is handed over, then the error
    assert.same({ "server shutting down", "close", 1001 }, { c:receive(1) })
    local data, err = c:receive(1)
    assert.is_nil(data)
    assert.matches("cannot connect", err)
    assert.equal(0, c.reconnects)
  end)
end)
