-- RFC 6455 on the wire: framing rules, fragmentation, control frames, the
-- closing handshake, UTF-8, and each close code of the README's limits table.
local testing = require "moonws.testing"

local TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10

local function close_payload(code, reason)
  return string.char(code >> 8, code & 0xff) .. (reason or "")
end

-- A final, masked client frame as bytes, for raw sockets.
local function raw_frame(opcode, payload)
  local mask = { 0x11, 0x22, 0x33, 0x44 }
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(payload:byte(i) ~ mask[(i - 1) % 4 + 1])
  end
  assert(#payload < 126)
  return string.char(0x80 | opcode, 0x80 | #payload, table.unpack(mask)) .. table.concat(out)
end

describe("RFC 6455 framing", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "spec/services/rt" } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  local function open(path)
    return assert(srv:connect(path or "/probe"))
  end

  -- Sends frames and expects the server to fail the connection with code.
  local function expect_failure(frames, code, path)
    local c = open(path)
    for _, f in ipairs(frames) do assert(c:sendFrame(f)) end
    local got = testing.until_close(c, 3)
    assert.equal(code, got)
  end

  -- A raw socket past the upgrade, for watching the TCP connection itself.
  local function raw_open()
    local s = assert(srv:tcp())
    s:send("GET /probe HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    local head = ""
    repeat head = head .. assert(s:receive(2)) until head:find("\r\n\r\n", 1, true)
    assert.matches("^HTTP/1%.1 101", head)
    assert.equal("", head:match("\r\n\r\n(.*)$"))
    return s
  end

  it("echoes text and binary messages, empty ones included", function()
    local c = open()
    c:send("echo:hello")
    assert.same({ "hello", "text" }, { c:receive(2) })
    c:send("echo:")
    assert.same({ "", "text" }, { c:receive(2) })
    c:sendBinary("\0\1\2\255")
    assert.same({ "\0\1\2\255", "binary" }, { c:receive(2) })
    c:sendBinary("")
    assert.same({ "", "binary" }, { c:receive(2) })
    assert.equal(1000, c:close())
  end)

  it("carries messages of every length encoding", function()
    local c = open()
    for _, n in ipairs({ 125, 126, 127, 65535, 65536, 1000000 }) do
      local payload = string.rep("\7", n)
      c:sendBinary(payload)
      local got = c:receive(5)
      assert.equal(n, #got)
      assert.equal(payload, got)
    end
    c:close()
  end)

  it("reassembles fragments with control frames between them", function()
    local c = open()
    c:sendFrame{ opcode = TEXT, fin = false, payload = "echo:" }
    c:sendFrame{ opcode = PING, payload = "p1" }
    c:sendFrame{ opcode = CONT, fin = false, payload = "frag" }
    c:sendFrame{ opcode = PONG, payload = "unsolicited" }
    c:sendFrame{ opcode = CONT, fin = false, payload = "" }
    c:sendFrame{ opcode = PING, payload = "p2" }
    c:sendFrame{ opcode = CONT, fin = true, payload = "ments" }
    assert.same({ "p1", "pong" }, { c:receive(2) })
    assert.same({ "p2", "pong" }, { c:receive(2) })
    assert.same({ "fragments", "text" }, { c:receive(2) })
    c:close()
  end)

  it("parses frames that arrive one byte at a time", function()
    local c = open()
    -- a masked text frame "echo:x" built by hand: mask 1,2,3,4
    local mask = { 1, 2, 3, 4 }
    local payload = "echo:x"
    local bytes = { string.char(0x81, 0x80 | #payload), string.char(table.unpack(mask)) }
    for i = 1, #payload do
      bytes[#bytes + 1] = string.char(payload:byte(i) ~ mask[(i - 1) % 4 + 1])
    end
    for b in table.concat(bytes):gmatch(".") do assert(c:sendRaw(b)) end
    assert.same({ "x", "text" }, { c:receive(2) })
    c:close()
  end)

  it("answers a ping with a pong carrying the same data", function()
    local c = open()
    c:ping("hello?")
    assert.same({ "hello?", "pong" }, { c:receive(2) })
    c:ping(string.rep("z", 125))
    assert.same({ string.rep("z", 125), "pong" }, { c:receive(2) })
    c:close()
  end)

  it("fails an unmasked client frame with 1002", function()
    expect_failure({ { opcode = TEXT, payload = "echo:x", mask = false } }, 1002)
  end)

  it("fails reserved opcodes with 1002", function()
    for _, op in ipairs({ 3, 7, 11, 15 }) do
      expect_failure({ { opcode = op, payload = "x" } }, 1002)
    end
  end)

  it("fails RSV bits without a negotiated extension with 1002", function()
    expect_failure({ { opcode = TEXT, rsv = 4, payload = "echo:x" } }, 1002)
    expect_failure({ { opcode = TEXT, rsv = 2, payload = "echo:x" } }, 1002)
    expect_failure({ { opcode = PING, rsv = 1, payload = "" } }, 1002)
  end)

  it("fails control frames over 125 bytes or fragmented with 1002", function()
    expect_failure({ { opcode = PING, payload = string.rep("a", 126) } }, 1002)
    expect_failure({ { opcode = PING, fin = false, payload = "a" } }, 1002)
  end)

  it("fails a continuation without a message, and a message inside one, with 1002", function()
    expect_failure({ { opcode = CONT, payload = "x" } }, 1002)
    expect_failure({ { opcode = TEXT, fin = false, payload = "a" }, { opcode = TEXT, payload = "b" } }, 1002)
  end)

  it("fails invalid UTF-8 in a text message with 1007", function()
    expect_failure({ { opcode = TEXT, payload = "echo:\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" } }, 1007)
    expect_failure({ { opcode = TEXT, payload = "\xc0\xaf" } }, 1007)
  end)

  it("fails fast: invalid UTF-8 closes before the fragmented message ends", function()
    local c = open()
    c:sendFrame{ opcode = TEXT, fin = false, payload = "echo:ok" }
    c:sendFrame{ opcode = CONT, fin = false, payload = "\xf4\x90\x80\x80" }   -- above U+10FFFF
    -- no final fragment: the close must come anyway
    assert.equal(1007, (testing.until_close(c, 3)))
  end)

  it("accepts UTF-8 split across fragments", function()
    local c = open()
    c:sendFrame{ opcode = TEXT, fin = false, payload = "echo:\xf0\x9f" }
    c:sendFrame{ opcode = CONT, fin = true, payload = "\x98\x80" }
    assert.same({ "\xf0\x9f\x98\x80", "text" }, { c:receive(2) })
    c:close()
  end)

  it("fails a message over max_message with 1009 without waiting for its bytes", function()
    local c = open("/limits")
    -- a header announcing 2000 bytes, and none of them
    assert(c:sendRaw(string.char(0x82, 0x80 | 126, 2000 >> 8, 2000 & 0xff, 1, 2, 3, 4)))
    assert.equal(1009, (testing.until_close(c, 3)))
    assert(srv:wait_log("message over max_message (1024 bytes) on /limits: closing 1009", 2, true))
    -- fragments that add up past the limit
    expect_failure({ { opcode = BINARY, fin = false, payload = string.rep("a", 600) },
                     { opcode = CONT, payload = string.rep("b", 600) } }, 1009, "/limits")
  end)

  it("lets messages up to max_message through", function()
    local c = open("/limits")
    c:sendBinary(string.rep("q", 1024))
    assert.equal(1024, #c:receive(2))
    c:close()
  end)

  it("echoes the close code and closes the TCP connection", function()
    local c = open()
    assert(c:sendFrame{ opcode = CLOSE, payload = close_payload(1000, "done") })
    local code, reason = testing.until_close(c, 2)
    assert.equal(1000, code)
    assert.equal("", reason)
    local data, why = c:receive(2)
    assert.is_nil(data)
    assert.not_equal("timeout", why)
  end)

  it("accepts an empty close and each code a peer may send", function()
    local c = open()
    assert(c:sendFrame{ opcode = CLOSE, payload = "" })
    assert.equal(1000, (testing.until_close(c, 2)))
    for _, code in ipairs({ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 }) do
      c = open()
      assert(c:sendFrame{ opcode = CLOSE, payload = close_payload(code) })
      assert.equal(code, (testing.until_close(c, 2)))
    end
  end)

  it("fails close frames with codes a peer may not send with 1002", function()
    for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 }) do
      expect_failure({ { opcode = CLOSE, payload = close_payload(code) } }, 1002)
    end
  end)

  it("fails a 1-byte close payload with 1002 and a non-UTF-8 reason with 1007", function()
    expect_failure({ { opcode = CLOSE, payload = "\3" } }, 1002)
    expect_failure({ { opcode = CLOSE, payload = close_payload(1000, "\xff") } }, 1007)
  end)

  it("ignores data after the client's close frame, answers it and ends the TCP connection", function()
    local s = raw_open()
    s:send(raw_frame(CLOSE, close_payload(1000)) .. raw_frame(TEXT, "echo:late"))
    local data, why = s:receiveAll(3)
    s:close()
    assert.equal("closed", why)
    assert.equal("\x88\x02\x03\xe8", data)       -- the close echoed, and nothing else
  end)

  it("ends the TCP connection as soon as the client answers the server's close", function()
    -- the linger for an unanswered close is 5 s: an answered one must not wait for it
    local s = raw_open()
    s:send(raw_frame(TEXT, "close:4000:bye"))
    local got = ""
    repeat got = got .. assert(s:receive(2)) until #got >= 7
    assert.equal("\x88\x05\x0f\xa0bye", got)
    s:send(raw_frame(CLOSE, close_payload(4000)))
    local data, why = s:receiveAll(2)
    s:close()
    assert.equal("", data)
    assert.equal("closed", why)
  end)

  it("handles a peer that vanishes mid-frame", function()
    local s = assert(srv:tcp())
    s:send("GET /probe HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert.matches("^HTTP/1%.1 101", assert(s:receive(2)))
    s:send(string.char(0x81, 0xfe, 0x10))  -- half a header
    s:close()
    local c = open()
    c:send("echo:still here")
    assert.equal("still here", (c:receive(2)))
    c:close()
  end)
end)
