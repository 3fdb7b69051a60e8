-- Many clients at once, and a graceful stop.
local testing = require "moonws.testing"

describe("under load", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "examples", log_level = "info" } end)
  lazy_teardown(function()
    if srv then srv:cleanup() end
  end)

  it("echoes for 200 concurrent clients, each in order", function()
    local cs = {}
    for i = 1, 200 do cs[i] = assert(srv:connect("/echo")) end
    -- every client has 10 messages in flight at once, 5 rounds over
    for round = 1, 5 do
      for i = 1, 200 do
        for k = 1, 10 do assert(cs[i]:send(("c%d r%d m%d"):format(i, round, k))) end
      end
      for i = 1, 200 do
        for k = 1, 10 do
          assert.equal(("c%d r%d m%d"):format(i, round, k), (cs[i]:receive(5)))
        end
      end
    end
    for i = 1, 200 do cs[i]:close() end
  end)

  it("echoes large messages whole, in order, mixed with small ones", function()
    local c = assert(srv:connect("/echo"))
    local sizes = { 1, 70000, 3, 1 << 20, 0, 16 * 1024 * 1024, 5 }
    for i, n in ipairs(sizes) do assert(c:sendBinary(string.rep(string.char(65 + i), n))) end
    for i, n in ipairs(sizes) do
      local data = assert(c:receive(10))
      assert.equal(n, #data)
      assert.equal(string.rep(string.char(65 + i), n), data)
    end
    c:close()
  end)

  it("closes every client 1001 on SIGTERM and exits 0", function()
    local cs = {}
    for i = 1, 20 do cs[i] = assert(srv:connect("/echo")) end
    local chat = assert(srv:connect("/chat"))
    srv:signal("TERM")
    for i = 1, 20 do
      local code, reason = testing.until_close(cs[i], 5)
      assert.equal(1001, code)
      assert.equal("server shutting down", reason)
    end
    assert.equal(1001, (testing.until_close(chat, 5)))
    assert.equal(0, srv:stop())
    -- every client answered: the 5 s grace was not needed
    assert.is_nil(srv:log():find("did not close within", 1, true))
  end)

  it("does not wait for HTTP connections that have sent nothing", function()
    local s2 = testing.start{ dir = "examples" }
    local silent = assert(s2:tcp())
    local idle = assert(s2:tcp())
    idle:send("GET /echo/nothing HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.matches("^HTTP/1%.1 404", assert(idle:receive(2)))
    assert.equal(0, s2:stop())
    assert.is_nil(s2:log():find("did not close within", 1, true))
    assert.equal("closed", select(2, silent:receiveAll(1)))
    silent:close()
    idle:close()
    s2:cleanup()
  end)
end)

describe("a stop with a silent client", function()
  it("waits up to 5 s for close frames, then exits 0", function()
    local srv = testing.start{ dir = "examples" }
    local c = assert(srv:connect("/echo"))      -- never reads, never answers
    assert(c)
    local t0 = require("moonws.core").now()
    assert.equal(0, srv:stop(15))
    local took = require("moonws.core").now() - t0
    assert.is_true(took >= 4.5, "stopped after " .. took .. " s")
    assert(srv:wait_log("did not close within 5 s", 1, true))
    srv:cleanup()
  end)
end)
