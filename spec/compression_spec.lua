-- permessage-deflate (RFC 7692): negotiation, both directions, limits.
local testing = require "moonws.testing"
local core = require "moonws.core"

local TEXT, BINARY, CONT, PING = 1, 2, 0, 9

-- The Sec-WebSocket-Extensions answer to raw offer lines (nil: none).
local function negotiate(srv, path, ...)
  local lines = {}
  for _, offer in ipairs({ ... }) do lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. offer .. "\r\n" end
  local s = assert(srv:tcp())
  s:send("GET " .. path .. " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    table.concat(lines) .. "\r\n")
  local resp = assert(s:receive(2))
  s:close()
  assert.matches("^HTTP/1%.1 101", resp)
  return resp:match("\r\nSec%-WebSocket%-Extensions: ([^\r]*)\r\n")
end

local function random_bytes(n)
  local t = {}
  local x = 12345
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char((x >> 16) % 256)   -- the low bits of an LCG repeat quickly
  end
  return table.concat(t)
end

-- A WebSocket upgrade over a raw socket, to see the server's frames as bytes;
-- returns the socket and what came after the 101's head.
local function raw_upgrade(srv, path, extensions)
  local s = assert(srv:tcp())
  s:send("GET " .. path .. " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    (extensions and "Sec-WebSocket-Extensions: " .. extensions .. "\r\n" or "") .. "\r\n")
  local got = ""
  while not got:find("\r\n\r\n", 1, true) do got = got .. assert(s:receive(2)) end
  local head, rest = got:match("^(.-\r\n\r\n)(.*)$")
  assert.matches("^HTTP/1%.1 101", head)
  assert.equal(extensions and "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    head:match("\r\nSec%-WebSocket%-Extensions: ([^\r]*)\r\n"))
  return s, rest
end

-- The next whole frame from a raw socket (the server's frames are unmasked):
-- its bytes, and what came after it.
local function raw_frame(s, buf)
  while true do
    if #buf >= 2 then
      local n, hl = buf:byte(2) & 127, 2
      if n == 126 then n, hl = #buf >= 4 and string.unpack(">I2", buf, 3), 4
      elseif n == 127 then n, hl = #buf >= 10 and string.unpack(">I8", buf, 3), 10 end
      if n and #buf >= hl + n then return buf:sub(1, hl + n), buf:sub(hl + n + 1) end
    end
    buf = buf .. assert(s:receive(2))
  end
end

-- Sends a close frame and waits for the server's: the connection no longer
-- counts for broadcasts.
local function raw_close(s, buf)
  s:send("\x88\x80\0\0\0\0")
  local f = raw_frame(s, buf)
  assert.equal(0x88, f:byte(1))
  s:close()
end

describe("permessage-deflate", function()
  local srv
  -- One worker: the broadcasts below count the receivers and show that a
  -- frame is compressed once for all of them, both of which are one
  -- worker's (each worker compresses once for its own clients).
  lazy_setup(function() srv = testing.start{ dir = "spec/services/pmd", workers = 1 } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  describe("negotiation", function()
    local NCT = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

    it("accepts a bare offer with what is in force", function()
      assert.equal(NCT, negotiate(srv, "/echo", "permessage-deflate"))
    end)

    it("answers each window-bits parameter", function()
      assert.equal(NCT .. "; client_max_window_bits=15",
        negotiate(srv, "/echo", "permessage-deflate; client_max_window_bits"))
      assert.equal(NCT .. "; client_max_window_bits=10",
        negotiate(srv, "/echo", "permessage-deflate; client_max_window_bits=10"))
      assert.equal(NCT .. "; server_max_window_bits=10",
        negotiate(srv, "/echo", "permessage-deflate; server_max_window_bits=10"))
      assert.equal(NCT .. "; server_max_window_bits=8; client_max_window_bits=9",
        negotiate(srv, "/echo", "permessage-deflate; client_max_window_bits=9; server_max_window_bits=8"))
      assert.equal(NCT, negotiate(srv, "/echo",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"))
    end)

    it("accepts quoted values", function()
      assert.equal(NCT .. "; client_max_window_bits=10",
        negotiate(srv, "/echo", 'permessage-deflate; client_max_window_bits="10"'))
      -- RFC 6455 §9.1: unescaped first, then a token.
      assert.equal(NCT .. "; client_max_window_bits=15",
        negotiate(srv, "/echo", 'permessage-deflate; client_max_window_bits="1\\5"'))
      assert.is_nil(negotiate(srv, "/echo", 'permessage-deflate; client_max_window_bits="1\\ 5"'))
    end)

    it("declines malformed, duplicated and unknown parameters", function()
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; server_max_window_bits"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; server_max_window_bits=08"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; server_max_window_bits=16"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; client_max_window_bits=7"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; server_no_context_takeover=1"))
      assert.is_nil(negotiate(srv, "/echo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate; mystery"))
      assert.is_nil(negotiate(srv, "/echo", "permessage-deflate;;"))
      assert.is_nil(negotiate(srv, "/echo", 'permessage-deflate; client_max_window_bits="10'))
      assert.is_nil(negotiate(srv, "/echo", "x-webkit-deflate-frame"))
    end)

    it("accepts the first acceptable of several offers, across header lines", function()
      assert.equal(NCT .. "; client_max_window_bits=12", negotiate(srv, "/echo",
        "permessage-deflate; mystery=1, permessage-deflate; client_max_window_bits=12, permessage-deflate"))
      assert.equal(NCT, negotiate(srv, "/echo", "foo; a=b", "permessage-deflate"))
      assert.equal(NCT .. "; server_max_window_bits=9", negotiate(srv, "/echo",
        'x-webkit-deflate-frame, permessage-deflate; server_max_window_bits="9"'))
    end)

    it("follows the service's settings", function()
      assert.equal("permessage-deflate", negotiate(srv, "/takeover", "permessage-deflate"))
      assert.equal("permessage-deflate; server_no_context_takeover",
        negotiate(srv, "/takeover", "permessage-deflate; server_no_context_takeover"))
      assert.equal("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
        negotiate(srv, "/small", "permessage-deflate; client_max_window_bits"))
      assert.equal("permessage-deflate; server_max_window_bits=9",
        negotiate(srv, "/small", "permessage-deflate; server_max_window_bits=12"))
      assert.is_nil(negotiate(srv, "/plain", "permessage-deflate"))
    end)
  end)

  describe("messages", function()
    local sizes = { 1, 64, 100, 5000, 70000, 1000000 }

    local function roundtrip(path, opts)
      local c = assert(srv:connect(path, { compression = opts or true }))
      assert.is_string(c.extensions)
      for _, n in ipairs(sizes) do
        local text = string.rep("moonws compresses ", n // 18 + 1):sub(1, n)
        assert(c:send(text))
        assert.equal(text, (c:receive(5)))
        local bin = random_bytes(math.min(n, 100000))
        assert(c:sendBinary(bin))
        assert.equal(bin, (c:receive(5)))
      end
      assert.equal(1000, c:close())
    end

    it("round-trips text and binary messages of every size", function()
      roundtrip("/echo")
    end)

    it("round-trips with context takeover", function()
      roundtrip("/takeover")
    end)

    it("round-trips with 9-bit windows and context takeover", function()
      roundtrip("/small")
    end)

    it("round-trips with 8-bit windows", function()
      roundtrip("/tiny", { server_max_window_bits = 8, client_max_window_bits = 8 })
      roundtrip("/echo", { server_max_window_bits = 8, client_max_window_bits = 8 })
    end)

    it("round-trips every parameter combination the client may offer", function()
      for _, snct in ipairs({ false, true }) do
        for _, cnct in ipairs({ false, true }) do
          for _, smwb in ipairs({ 0, 9, 15 }) do
            for _, cmwb in ipairs({ false, true, 8, 12 }) do
              for _, path in ipairs({ "/echo", "/takeover" }) do
                local offer = { server_no_context_takeover = snct, client_no_context_takeover = cnct,
                                server_max_window_bits = smwb ~= 0 and smwb or nil, client_max_window_bits = cmwb }
                local c = assert(srv:connect(path, { compression = offer }))
                for i = 1, 3 do
                  local text = ("message %d of a series that repeats itself "):format(i):rep(20)
                  c:send(text)
                  assert.equal(text, (c:receive(2)))
                end
                c:close()
              end
            end
          end
        end
      end
    end)

    it("compresses messages at the threshold, not below", function()
      local c = assert(srv:connect("/threshold", { compression = true }))
      c:send(string.rep("a", 999))
      assert.equal(999, #c:receive(2))
      assert.is_false(c.compressed)
      c:send(string.rep("a", 1000))
      assert.equal(1000, #c:receive(2))
      assert.is_true(c.compressed)
      c:close()
      c = assert(srv:connect("/echo", { compression = true }))
      c:send("short")
      assert.equal("short", (c:receive(2)))
      assert.is_false(c.compressed)
      c:close()
    end)

    it("sends incompressible data uncompressed without context takeover", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      local noise = random_bytes(4000)
      c:sendBinary(noise)
      assert.equal(noise, (c:receive(2)))
      assert.is_false(c.compressed)
      c:close()
    end)

    it("uses the context across messages only with takeover", function()
      local text = random_bytes(3000):gsub("[^%w]", "x")
      local function wire(path)
        local c = assert(srv:connect(path, { compression = true }))
        local before = c.wire
        for _ = 1, 20 do
          c:send(text)
          assert.equal(text, (c:receive(2)))
        end
        local w = c.wire - before
        c:close()
        return w
      end
      local with, without = wire("/takeover"), wire("/echo")
      assert.is_true(with * 3 < without, ("takeover %d bytes, none %d bytes"):format(with, without))
    end)

    it("compresses empty messages with context takeover and threshold 0", function()
      local c = assert(srv:connect("/takeover0", { compression = true }))
      for _, m in ipairs({ "first message", "", "", "second message", "", "third message" }) do
        assert(c:send(m))
        local before = c.wire
        assert.equal(m, (c:receive(2)))
        assert.is_true(c.compressed)
        -- An empty message is the single byte 00 (RFC 7692 §7.2.3.6): a
        -- 2-byte header and 1 byte of payload.
        if m == "" then assert.equal(3, c.wire - before) end
      end
      -- Broadcast goes through each connection's own stream.
      local status, n = srv:http("POST", "/takeover0/broadcast", "")
      assert.equal(200, status)
      assert.equal("1", n)
      local before = c.wire
      assert.equal("", (c:receive(2)))
      assert.is_true(c.compressed)
      assert.equal(3, c.wire - before)
      assert(c:send("after the broadcast"))
      assert.equal("after the broadcast", (c:receive(2)))
      assert.equal(1000, c:close())
    end)

    it("takes an empty compressed payload as an empty message, with and without takeover", function()
      local text = string.rep("the stream must stay in step. ", 10)
      for _, path in ipairs({ "/takeover", "/echo" }) do
        local c = assert(srv:connect(path, { compression = true }))
        assert(c:send(text))
        assert.equal(text, (c:receive(2)))
        -- RSV1 and not one payload byte: "" (the tail alone is no deflate data).
        c:sendFrame{ opcode = TEXT, rsv = 4, payload = "" }
        assert.same({ "", "text" }, { c:receive(2) })
        c:sendFrame{ opcode = BINARY, rsv = 4, fin = false, payload = "" }
        c:sendFrame{ opcode = CONT, fin = true, payload = "" }
        assert.same({ "", "binary" }, { c:receive(2) })
        -- The empty stored block, as RFC 7692 §7.2.3.6 writes it.
        c:sendFrame{ opcode = TEXT, rsv = 4, payload = "\0" }
        assert.same({ "", "text" }, { c:receive(2) })
        -- The client sends "" as it is; it comes back as it is too.
        assert(c:send(""))
        assert.same({ "", "text" }, { c:receive(2) })
        assert.is_false(c.compressed)
        -- With takeover this one refers to the first message's window.
        assert(c:send(text))
        assert.equal(text, (c:receive(2)))
        assert.equal(1000, c:close())
      end
    end)

    it("inflates a compressed message sent in fragments with pings between them", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      local text = string.rep("fragmented and compressed ", 200)
      local z = core.deflate(text)
      local a, b = z:sub(1, 10), z:sub(11, 20)
      local rest = z:sub(21)
      c:sendFrame{ opcode = TEXT, rsv = 4, fin = false, payload = a }
      c:sendFrame{ opcode = PING, payload = "1" }
      c:sendFrame{ opcode = CONT, fin = false, payload = b }
      c:sendFrame{ opcode = PING, payload = "2" }
      c:sendFrame{ opcode = CONT, fin = true, payload = rest }
      assert.same({ "1", "pong" }, { c:receive(2) })
      assert.same({ "2", "pong" }, { c:receive(2) })
      assert.equal(text, (c:receive(2)))
      c:close()
    end)

    it("fails a compression bomb over max_message with 1009", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      local bomb = core.deflate(string.rep("\0", 20 * 1024 * 1024))
      assert.is_true(#bomb < 100000)
      c:sendFrame{ opcode = BINARY, rsv = 4, payload = bomb }
      assert.equal(1009, (testing.until_close(c, 5)))
    end)

    it("the client takes max_message only as an integer from 1 to 2^40", function()
      for _, bad in ipairs({ -1, 0, 1.5, 1e300, 2^40 + 1, (1 << 40) + 1, "100", true }) do
        local ok, c = pcall(srv.connect, srv, "/echo", { compression = true, max_message = bad })
        if ok and c then c:close() end
        assert.is_false(ok, tostring(bad))
        assert.matches("max_message must be an integer from 1 to 2^40", c, 1, true)
      end
      for _, good in ipairs({ 1 << 40, 2^40, 100000 }) do
        local c = assert(srv:connect("/echo", { compression = true, max_message = good }))
        local text = string.rep("inflated on the client side ", 100)
        assert(c:send(text))
        assert.equal(text, (c:receive(2)))
        assert.is_true(c.compressed)
        assert.equal(1000, c:close())
      end
    end)

    it("fails corrupt compressed data with 1007", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      c:sendFrame{ opcode = BINARY, rsv = 4, payload = "\255\255\255\255\255" }
      assert.equal(1007, (testing.until_close(c, 2)))
    end)

    it("fails truncated deflate data with 1007, not a partial message", function()
      local text = string.rep("only the first half of this arrives. ", 20)
      local z = core.deflate(text)
      for _, path in ipairs({ "/echo", "/takeover" }) do
        local c = assert(srv:connect(path, { compression = true }))
        c:sendFrame{ opcode = TEXT, rsv = 4, payload = z:sub(1, #z // 2) }
        local code, _, before = testing.until_close(c, 2)
        assert.equal(1007, code)
        assert.same({}, before)
      end
    end)

    it("fails RSV1 on a continuation frame, or without the extension, with 1002", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      c:sendFrame{ opcode = TEXT, rsv = 4, fin = false, payload = core.deflate("abc") }
      c:sendFrame{ opcode = CONT, rsv = 4, fin = true, payload = "" }
      assert.equal(1002, (testing.until_close(c, 2)))
      c = assert(srv:connect("/echo"))
      c:sendFrame{ opcode = TEXT, rsv = 4, payload = core.deflate("abc") }
      assert.equal(1002, (testing.until_close(c, 2)))
    end)

    it("fails RSV1 on a ping with 1002 while compression is negotiated", function()
      local c = assert(srv:connect("/echo", { compression = true }))
      assert.is_string(c.extensions)
      c:sendFrame{ opcode = PING, rsv = 4, payload = "x" }
      assert.equal(1002, (testing.until_close(c, 2)))
    end)

    it("broadcasts to compressing and plain clients at once", function()
      local zs, ps = {}, {}
      for i = 1, 3 do
        zs[i] = assert(srv:connect("/echo", { compression = true }))
        ps[i] = assert(srv:connect("/echo"))
      end
      local news = string.rep("breaking news, read all about it. ", 300)
      local zwire, pwire = {}, {}
      for i = 1, 3 do zwire[i], pwire[i] = zs[i].wire, ps[i].wire end
      local status, n = srv:http("POST", "/echo/broadcast", news)
      assert.equal(200, status)
      assert.equal("6", n)
      for i = 1, 3 do
        assert.equal(news, (zs[i]:receive(2)))
        assert.is_true(zs[i].compressed)
        assert.equal(news, (ps[i]:receive(2)))
        assert.is_false(ps[i].compressed)
        zwire[i], pwire[i] = zs[i].wire - zwire[i], ps[i].wire - pwire[i]
        zs[i]:close()
        ps[i]:close()
      end
      -- The same frame for each (the bytes themselves: see the next test).
      assert.equal(zwire[1], zwire[2])
      assert.equal(zwire[1], zwire[3])
      assert.is_true(zwire[1] < pwire[1] // 10)
      assert.equal(#news + 4, pwire[1])
    end)

    -- Compressed once, sent to all: every compressing client gets the same
    -- bytes, and the plain ones the plain frame.
    local function same_bytes_to_all(path, post, count)
      local zs, ps = {}, {}
      for i = 1, 3 do
        zs[i] = { raw_upgrade(srv, path, "permessage-deflate") }
        ps[i] = { raw_upgrade(srv, path) }
      end
      local lz = assert(srv:connect(path, { compression = true }))
      local lp = assert(srv:connect(path))
      local news = string.rep("the same bytes for every subscriber. ", 200)
      local status, n = srv:http("POST", post, news)
      assert.equal(200, status)
      assert.equal(tostring(count), n)
      local first
      for i = 1, 3 do
        local f
        f, zs[i][2] = raw_frame(zs[i][1], zs[i][2])
        assert.equal(0xc1, f:byte(1))             -- FIN, RSV1, text
        assert.is_true(#f < #news // 10)
        first = first or f
        assert.equal(first, f)
        f, ps[i][2] = raw_frame(ps[i][1], ps[i][2])
        assert.equal("\x81\x7e" .. string.pack(">I2", #news) .. news, f)
      end
      assert.equal(news, (lz:receive(2)))
      assert.is_true(lz.compressed)
      assert.equal(news, (lp:receive(2)))
      assert.is_false(lp.compressed)
      for i = 1, 3 do
        raw_close(zs[i][1], zs[i][2])
        raw_close(ps[i][1], ps[i][2])
      end
      assert.equal(1000, lz:close())
      assert.equal(1000, lp:close())
    end

    it("broadcasts the same compressed bytes to every compressing client", function()
      same_bytes_to_all("/echo", "/echo/broadcast", 8)
    end)

    it("publishes to compressing and plain subscribers at once, the same bytes to each", function()
      same_bytes_to_all("/pubsub", "/pubsub/publish", 8)
    end)
  end)
end)
