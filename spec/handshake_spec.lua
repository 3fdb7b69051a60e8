-- The upgrade (RFC 6455 §4): refusals with their statuses, Origin checks,
-- onUpgrade, sub-protocol choice.
local testing = require "moonws.testing"
local client = require "moonws.client"

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

local function upgrade(srv, path, extra, method, version)
  local s = assert(srv:tcp())
  assert(s:send(("%s %s HTTP/%s\r\nHost: 127.0.0.1\r\n%s\r\n"):format(method or "GET", path,
    version or "1.1", extra)))
  local data = s:receiveAll(3)
  s:close()
  return tonumber(data:match("^HTTP/1%.1 (%d%d%d)")), data
end

local BASE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"

describe("the WebSocket upgrade", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "spec/services/rt" } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("answers 101 with the accept key of RFC 6455 §1.3", function()
    local s = assert(srv:tcp())
    s:send("GET /probe HTTP/1.1\r\nHost: x\r\n" .. BASE .. "Sec-WebSocket-Key: " .. KEY .. "\r\n\r\n")
    local resp = assert(s:receive(2))
    s:close()
    assert.matches("^HTTP/1%.1 101 Switching Protocols\r\n", resp)
    assert.matches("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", resp)
  end)

  it("accepts header names in any case and Connection with several tokens", function()
    local status = upgrade(srv, "/probe", "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n" ..
      "sec-websocket-version: 13\r\nsec-websocket-key: " .. KEY .. "\r\n")
    assert.equal(101, status)
  end)

  it("refuses an upgrade with another method (400)", function()
    assert.equal(400, (upgrade(srv, "/probe", BASE .. "Sec-WebSocket-Key: " .. KEY .. "\r\n", "POST")))
  end)

  it("refuses a missing or malformed key (400)", function()
    assert.equal(400, (upgrade(srv, "/probe", BASE)))
    assert.equal(400, (upgrade(srv, "/probe", BASE .. "Sec-WebSocket-Key: short\r\n")))
  end)

  it("refuses other versions with 426 and Sec-WebSocket-Version: 13", function()
    local status, resp = upgrade(srv, "/probe", "Upgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " .. KEY .. "\r\n")
    assert.equal(426, status)
    assert.matches("Sec%-WebSocket%-Version: 13\r\n", resp)
  end)

  it("refuses Connection without Upgrade and HTTP/1.0 (400)", function()
    assert.equal(400, (upgrade(srv, "/probe", "Upgrade: websocket\r\nConnection: keep-alive\r\n" ..
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " .. KEY .. "\r\n")))
    assert.equal(400, (upgrade(srv, "/probe", BASE .. "Sec-WebSocket-Key: " .. KEY .. "\r\n", "GET", "1.0")))
  end)

  it("answers 404 to an upgrade where no service is", function()
    assert.equal(404, (upgrade(srv, "/nowhere", BASE .. "Sec-WebSocket-Key: " .. KEY .. "\r\n")))
  end)

  it("mounts files by path: nested/index.lua and an explicit path", function()
    local c = assert(srv:connect("/nested/deep"))
    assert.equal("deep /nested/deep", (c:receive(2)))
    c:close()
    c = assert(srv:connect("/custom/place"))
    assert.equal("/custom/place", (c:receive(2)))
    c:close()
    local _, _, status = srv:connect("/explicit")
    assert.equal(404, status)
  end)

  describe("Origin", function()
    it("lets listed origins in", function()
      local c = assert(srv:connect("/origin", { headers = { Origin = "https://good.example" } }))
      assert.equal("welcome", (c:receive(2)))
      c:close()
    end)

    it("refuses other origins and a missing one with 403", function()
      local c, err, status = srv:connect("/origin", { headers = { Origin = "https://evil.example" } })
      assert.is_nil(c)
      assert.equal(403, status)
      assert.matches("403", err)
      c, _, status = srv:connect("/origin")
      assert.is_nil(c)
      assert.equal(403, status)
    end)
  end)

  describe("onUpgrade", function()
    it("refuses with the status and body it returns", function()
      local status, resp = upgrade(srv, "/gate", BASE .. "Sec-WebSocket-Key: " .. KEY .. "\r\n")
      assert.equal(401, status)
      assert.matches("\r\n\r\ntoken required$", resp)
      status = upgrade(srv, "/gate?token=secret", BASE .. "X-Role: banned\r\nSec-WebSocket-Key: " .. KEY .. "\r\n")
      assert.equal(403, status)
    end)

    it("accepts and hands req.data to caller.data", function()
      local c = assert(srv:connect("/gate?token=secret&user=ann", { headers = { ["X-Role"] = "admin" } }))
      assert.equal("ann/admin", (c:receive(2)))
      c:close()
    end)

    it("answers 500 when onUpgrade fails", function()
      local _, _, status = srv:connect("/gate_error")
      assert.equal(500, status)
      assert(srv:wait_log("gate broke", 2, true))
    end)
  end)

  describe("sub-protocols", function()
    it("selects the first protocol of the client's list that the service supports", function()
      local c = assert(srv:connect("/probe", { protocols = { "zz", "p2", "p1" } }))
      assert.equal("p2", c.protocol)
      c:send("info")
      local info = require("cjson").decode((c:receive(2)))
      assert.equal("p2", info.protocol)
      c:close()
      c = assert(srv:connect("/probe", { protocols = { "p1", "p2" } }))
      assert.equal("p1", c.protocol)
      c:close()
    end)

    it("accepts without a protocol header when none matches", function()
      local c = assert(srv:connect("/probe", { protocols = { "x", "y" } }))
      assert.is_nil(c.protocol)
      assert.is_nil(c.headers["sec-websocket-protocol"])
      c:close()
    end)
  end)

  it("gives up after its retries when nothing listens", function()
    local c, err = client.connect("ws://127.0.0.1:1/probe", { retry = { count = 2, interval = 0.01 }, timeout = 1 })
    assert.is_nil(c)
    assert.matches("cannot connect", err)
  end)

  it("retries a connection until the server listens", function()
    local core = require "moonws.core"
    -- a port that was free a moment ago, and a server that takes it late
    local probe = testing.start{ dir = "examples" }
    local port = probe.port
    assert.equal(0, probe:stop())
    probe:cleanup()
    local bin = os.getenv("MOONWS_BIN") or "build/moonws"
    local pid, fd = core.spawn({ "sh", "-c", ("sleep 0.3; exec %s -l 127.0.0.1:%d examples"):format(bin, port) },
                               { stderr = "/dev/null" })
    assert(pid, fd)
    local c, err = client.connect(("ws://127.0.0.1:%d/echo"):format(port),
                                  { retry = { count = 30, interval = 0.05, backoff = 1 }, timeout = 1 })
    local echoed = c and c:send("late but there") and c:receive(2)
    if c then c:close() end
    core.kill(pid, "TERM")
    local code = core.wait(pid, 10)
    core.closefd(fd)
    assert(c, err)
    assert.equal("late but there", echoed)
    assert.equal(0, code)
  end)
end)
