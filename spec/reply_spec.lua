-- Replies by return value (string, table, moonws.binary, moonws.close, nil)
-- and headers for the 101 returned from onUpgrade.
local testing = require "moonws.testing"
local cjson = require "cjson"

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

describe("handlers' answers", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "spec/services/reply" } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  describe("replies by return value", function()
    it("send a returned string as text, a table as JSON, moonws.binary as binary", function()
      local c = assert(srv:connect("/returns"))
      c:send("text")
      assert.same({ "hello", "text" }, { c:receive(2) })
      c:send("echo é")
      assert.same({ "echo é", "text" }, { c:receive(2) })
      c:send("table")
      local data, kind = c:receive(2)
      assert.equal("text", kind)
      assert.same({ n = 1, list = {} }, cjson.decode(data))
      assert.matches('"list":%[%]', data)
      c:send("number")
      assert.same({ "42", "text" }, { c:receive(2) })
      c:send("binary")
      assert.same({ "\0\1\2", "binary" }, { c:receive(2) })
      c:sendBinary("abc")
      assert.same({ "cba", "binary" }, { c:receive(2) })
      c:send("nothing")
      assert.same({ nil, "timeout" }, { c:receive(0.3) })
      -- `return caller:send(x)` returns true: an early return, not a reply
      c:send("sent")
      assert.same({ "sent by hand", "text" }, { c:receive(2) })
      assert.same({ nil, "timeout" }, { c:receive(0.3) })
      c:send("close")
      local code, reason = testing.until_close(c, 2)
      assert.equal(4000, code)
      assert.equal("bye", reason)
    end)

    it("fail the connection 1011 for a value that cannot be sent, with onError", function()
      for what, why in pairs({ badutf8 = "not valid UTF%-8", ["function"] = "function",
                               selfref = "nested too deep" }) do
        local c = assert(srv:connect("/returns"))
        c:send(what)
        assert.equal(1011, (testing.until_close(c, 2)), what)
        local _, err = srv:http("GET", "/returns/err")
        assert.matches("onText returned a value that cannot be sent: .*" .. why, err)
      end
      local c = assert(srv:connect("/returns"))
      c:send("text")
      assert.equal("hello", (c:receive(2)))
      c:close()
    end)

    it("work from dispatched handlers and onMessage, not from onPing", function()
      local c = assert(srv:connect("/events"))
      c:send('{"event": "add", "a": 2, "b": 40}')
      assert.same({ sum = 42 }, cjson.decode((c:receive(2))))
      c:send('{"x": [1]}')
      assert.same({ echoed = { x = { 1 } } }, cjson.decode((c:receive(2))))
      c:ping("p")
      assert.same({ nil, "timeout" }, { c:receive(0.3) })
      c:close()
    end)
  end)

  describe("headers for the 101", function()
    it("are written as onUpgrade returns them, a list giving one line each", function()
      local s = assert(srv:tcp())
      s:send("GET /returns HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " .. KEY .. "\r\n\r\n")
      local resp = assert(s:receive(2))
      s:close()
      assert.matches("^HTTP/1%.1 101 ", resp)
      assert.matches("\r\nSet%-Cookie: a=1; Path=/\r\n", resp)
      assert.matches("\r\nSet%-Cookie: b=2\r\n", resp)
      assert.matches("\r\nX%-Room: lobby\r\n", resp)
      local c = assert(srv:connect("/returns"))
      assert.equal("lobby", c.headers["x-room"])
      c:close()
    end)

    it("refuse the handshake's own fields and malformed lines with 500, logging why", function()
      for bad, why in pairs({ upgrade = "Upgrade is written by the server",
                              accept = "Sec%-WebSocket%-Accept is written by the server",
                              length = "Content%-Length is written by the server",
                              newline = "one line", name = "token" }) do
        local c, err, status = srv:connect("/returns?bad=" .. bad)
        assert.is_nil(c)
        assert.equal(500, status, bad)
        assert(srv:wait_log("returns.lua: onUpgrade returned headers the 101 cannot carry: .*" .. why), bad)
      end
      local c = assert(srv:connect("/returns"))
      c:close()
    end)

    it("come as lists from endpoints too, where the server's own are refused", function()
      local s = assert(srv:tcp())
      s:send("GET /returns/cookie HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local resp = s:receiveAll(2)
      s:close()
      assert.matches("\r\nSet%-Cookie: x=1\r\n", resp)
      assert.matches("\r\nSet%-Cookie: y=2\r\n", resp)
      assert.equal(500, (srv:http("GET", "/returns/reserved")))
      assert(srv:wait_log("Transfer%-Encoding is written by the server"))
    end)
  end)
end)
