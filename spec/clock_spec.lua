-- The server's timeouts run on the monotonic clock, not on the wall clock.
-- The wall clock can be stepped while the server runs (NTP, a hypervisor
-- setting a guest's time), and libev's ev_now() follows it. Here the
-- server's wall clock runs ten times too fast (libfaketime, with the
-- monotonic clock left alone): a timeout measured on it would fire after a
-- tenth of its time. Each timeout is measured from before the client
-- connected, on the monotonic clock the client reads too.
local testing = require "moonws.testing"
local core = require "moonws.core"

local function faketime_library()
  local p = io.popen("ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null")
  local path = p:read("l")
  p:close()
  return assert(path, "libfaketime is not installed (scripts/deps test installs it)")
end

-- The wall clock the server sees runs this much faster than real time.
local RATE = 10

describe("timeouts with a wall clock that runs ten times too fast", function()
  local srv
  lazy_setup(function()
    local asan = os.getenv("ASAN_OPTIONS")
    srv = testing.start{
      dir = "spec/services/hardening",
      args = { "--handshake-timeout", "2", "--keepalive-timeout", "2", "--close-timeout", "1" },
      env = {
        LD_PRELOAD = faketime_library(),
        FAKETIME = "+0 x" .. RATE,
        DONT_FAKE_MONOTONIC = "1",
        -- an AddressSanitizer build wants its runtime first in the list
        ASAN_OPTIONS = (asan and asan ~= "" and asan .. ":" or "") .. "verify_asan_link_order=0",
      },
    }
  end)
  lazy_teardown(function()
    if srv then
      assert.equal(0, srv:stop())
      srv:cleanup()
    end
  end)

  -- Waits for the server to close s, and asserts that it did so no sooner
  -- than `least` seconds after t0; returns what s received.
  local function assert_closed_after(s, t0, least, what)
    local data, why = s:receiveAll(least + 4)
    local took = core.now() - t0
    s:close()
    assert.equal("closed", why)
    assert.is_true(took >= least - 1e-6, ("%s after %.3f s"):format(what, took))
    return data
  end

  it("does run the server on a fast wall clock", function()
    -- os.time() in a handler is the server's wall clock
    local _, before = assert(srv:http("GET", "/h/time"))
    local t0 = core.now()
    repeat core.sleep(0.05) until core.now() - t0 >= 1
    local _, after = assert(srv:http("GET", "/h/time"))
    local d = tonumber(after) - tonumber(before)
    assert.is_true(d >= RATE / 2, ("the server's clock moved %d s in 1 s"):format(d))
  end)

  it("drops a request that does not arrive whole after --handshake-timeout, not sooner", function()
    local t0 = core.now()
    local s = assert(srv:tcp())
    s:send("GET /h/seq HTTP/1.1\r\nHost: a\r\n")
    assert_closed_after(s, t0, 2, "dropped")
  end)

  it("keeps an idle keep-alive connection for --keepalive-timeout", function()
    -- the server's idle time begins when it has answered, after this
    local t0 = core.now()
    local s = assert(srv:tcp())
    s:send("GET /h/seq HTTP/1.1\r\nHost: a\r\n\r\n")
    local got = assert(s:receive(3))
    assert.matches("^HTTP/1%.1 200 ", got)
    assert_closed_after(s, t0, 2, "closed")
  end)

  it("closes a silent WebSocket 1001 after its idle_timeout (1 s), not sooner", function()
    local t0 = core.now()
    local c = assert(srv:connect("/idle"))
    local data, kind, code = c:receive(5)
    local took = core.now() - t0
    assert.equal("close", kind, data)
    assert.equal(1001, code)
    assert.is_true(took >= 1 - 1e-6, ("closed after %.3f s"):format(took))
  end)

  it("waits --close-timeout (1 s) for the answer to its close frame, not less", function()
    -- an upgrade by hand on a raw socket, which never answers the close
    -- frame that the idle timeout (1 s) sends
    local t0 = core.now()
    local s = assert(srv:tcp())
    s:send("GET /idle HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    local data = assert_closed_after(s, t0, 1 + 1, "dropped")
    local body = assert(data:match("^HTTP/1%.1 101 .-\r\n\r\n(.*)$"))
    -- the close frame: 1001 "idle timeout"
    assert.equal(string.char(0x88, 2 + #"idle timeout", 0x03, 0xE9) .. "idle timeout", body)
  end)

  it("still serves another client meanwhile", function()
    local c = assert(srv:connect("/echo"))
    c:send("still here")
    assert.equal("still here", (c:receive(3)))
    c:close()
  end)
end)
