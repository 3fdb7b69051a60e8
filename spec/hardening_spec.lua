-- Attacks on the HTTP side and on the connections (issue 10): each one is
-- run bounded in count and time on loopback, ends the attacker's connection
-- (or holds it back) only, while a bystander keeps echoing through /echo;
-- where memory is the point the server's RSS is held to a bound; and the
-- server still stops with exit 0 afterwards.
--
-- With MOONWS_ATTACK_LOG=FILE each bystander's figures go to FILE.
local testing = require "moonws.testing"
local core = require "moonws.core"

local DIR = "spec/services/hardening"
local MiB = 1024 * 1024
local TEXT, BINARY, CONT, PING = 1, 2, 0, 9

local function status_of(resp)
  return tonumber(resp:match("^HTTP/1%.1 (%d%d%d)"))
end

-- Reads one whole response (head and Content-Length body) from a raw socket.
local function read_response(s, timeout)
  local data, deadline = "", core.now() + (timeout or 5)
  while true do
    local head_end = data:find("\r\n\r\n", 1, true)
    if head_end then
      local len = tonumber(data:match("\r\nContent%-Length: (%d+)\r\n")) or 0
      if #data >= head_end + 3 + len then
        return data:sub(1, head_end + 3), data:sub(head_end + 4, head_end + 3 + len)
      end
    end
    local left = deadline - core.now()
    if left <= 0 then return nil, "timeout" end
    local more, why = s:receive(left)
    if not more then return nil, why end
    data = data .. more
  end
end

-- Splits a stream of responses into their statuses and bodies.
local function responses(data)
  local out, pos = {}, 1
  while pos <= #data do
    local head_end = data:find("\r\n\r\n", pos, true)
    if not head_end then break end
    local head = data:sub(pos, head_end + 3)
    local len = tonumber(head:match("\r\nContent%-Length: (%d+)\r\n"))
    out[#out + 1] = { status = status_of(head), body = data:sub(head_end + 4, head_end + 3 + len) }
    pos = head_end + 4 + len
  end
  return out
end

local clk_tck
-- CPU time (user + system, in seconds) the process has used so far.
local function cpu_seconds(pid)
  if not clk_tck then
    local p = io.popen("getconf CLK_TCK")
    clk_tck = tonumber(p:read("a")) or 100
    p:close()
  end
  local f = assert(io.open(("/proc/%d/stat"):format(pid)))
  local stat = f:read("a")
  f:close()
  -- after the command name: state is field 3, utime 14 and stime 15
  local fields = {}
  for v in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / clk_tck
end

-- The budget's account at exit is a debug line: what it still held.
local function assert_budget_balanced(srv)
  local line = srv:log():match("[^\n]*unfinished messages and bodies at exit[^\n]*")
  assert(line, "no account of the memory budget at exit")
  assert.matches(": 0 bytes held", line, 1, true)
end

describe("pipelined HTTP requests", function()
  it("are not read while their answers wait unread: memory stays bounded", function()
    local srv = testing.start{ dir = DIR, args = { "--keepalive-timeout", "3" } }
    local rss0 = srv:rss()
    local b = testing.bystander(srv, "/echo")
    -- 300 GETs (11 KB) for a 1 MB answer each, none of it read: 300 MB if
    -- every answer were made at once
    local s = assert(srv:tcp())
    assert(s:send(string.rep("GET /h/big HTTP/1.1\r\nHost: a\r\n\r\n", 300)))
    assert(srv:wait_log("over max_backpressure: reading paused", 5, true))
    assert(b:wait(100, 10))                     -- a second or so of echoes meanwhile
    local _, peak = srv:rss()
    -- the answers that were made are whole and in order
    local head, body = read_response(s, 5)
    assert.equal(200, status_of(head))
    assert.equal(1000000, #body)
    -- the client that never reads on is dropped after the keep-alive time
    assert(srv:wait_log("the client stopped reading its answers: dropped", 10, true))
    assert(b:wait(5, 5))
    local st = b:stop(("300 pipelined GETs of a 1 MB answer, unread (RSS +%.1f MiB, bound 64)")
      :format((peak - rss0) / MiB))
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.is_true(peak - rss0 < 64 * MiB, ("RSS grew by %.1f MiB"):format((peak - rss0) / MiB))
    s:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("are all answered, in order, when the client reads", function()
    local srv = testing.start{ dir = DIR }
    local s = assert(srv:tcp())
    local reqs = {}
    for i = 1, 24 do
      reqs[#reqs + 1] = "GET /h/big HTTP/1.1\r\nHost: a\r\n\r\n"
      reqs[#reqs + 1] = ("GET /h/size?n=%d HTTP/1.1\r\nHost: a\r\n\r\n"):format(i)
    end
    reqs[#reqs + 1] = "GET /h/size?n=7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert(s:send(table.concat(reqs)))
    local data, why = s:receiveAll(20)
    s:close()
    assert.equal("closed", why)
    local rs = responses(data)
    assert.equal(49, #rs)
    for i = 1, 24 do
      assert.equal(200, rs[2 * i - 1].status)
      assert.equal(1000000, #rs[2 * i - 1].body)
      assert.equal(string.rep("z", i), rs[2 * i].body)
    end
    assert.equal("zzzzzzz", rs[49].body)
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("are all answered when the client closes its side right after sending them", function()
    local srv = testing.start{ dir = DIR }
    local s = assert(srv:tcp())
    local reqs = {}
    for i = 1, 40 do
      reqs[#reqs + 1] = i % 10 == 0 and "GET /h/big HTTP/1.1\r\nHost: a\r\n\r\n"
        or ("GET /h/size?n=%d HTTP/1.1\r\nHost: a\r\n\r\n"):format(i)
    end
    assert(s:send(table.concat(reqs)))
    s:shutdown()
    local data, why = s:receiveAll(20)
    s:close()
    assert.equal("closed", why)
    local rs = responses(data)
    assert.equal(40, #rs)
    for i = 1, 40 do
      assert.equal(200, rs[i].status)
      assert.equal(i % 10 == 0 and 1000000 or i, #rs[i].body)
    end
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("get a turn each: one connection's pile does not go before everybody else", function()
    -- One worker: taking turns is within one worker's loop, and /h/seq
    -- numbers the requests of one worker.
    local srv = testing.start{ dir = DIR, workers = 1 }
    local b = testing.bystander(srv, "/echo")
    local spin, pile, other = assert(srv:tcp()), assert(srv:tcp()), assert(srv:tcp())
    -- while the worker is busy, one request arrives on `other`, then 500
    -- on `pile`: they are read in the same loop iteration
    assert(spin:send("GET /h/spin HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert(srv:wait_log("spinning", 5, true))
    assert(other:send("GET /h/seq HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert(pile:send(string.rep("GET /h/seq HTTP/1.1\r\nHost: a\r\n\r\n", 500)))
    local head, body = read_response(other, 5)
    assert.equal(200, status_of(head))
    -- `other` was answered after a batch of the pile at most, not after all of it
    assert.is_true(tonumber(body) <= 100, "answered as number " .. body)
    local rest = ""
    repeat
      local more = assert(pile:receive(5))
      rest = rest .. more
    until #responses(rest) == 500
    assert.equal("501", responses(rest)[500].body)
    -- (this bystander waited for the 0.3 s handler that set the scene)
    local st = b:stop("500 pipelined requests behind a 0.3 s handler")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    -- and piles of 4000 requests (in sends of 1000) for a second, while
    -- another client echoes
    b = testing.bystander(srv, "/echo")
    local one = "GET /h/seq HTTP/1.1\r\nHost: a\r\n\r\n"
    local deadline, piles = core.now() + 1, 0
    repeat
      for _ = 1, 4 do assert(pile:send(string.rep(one, 1000))) end
      rest = ""
      repeat rest = rest .. assert(pile:receive(5)) until #responses(rest) == 4000
      piles = piles + 1
    until core.now() > deadline or piles == 50
    st = b:stop(("%d piles of 4000 pipelined requests on one connection"):format(piles))
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    spin:close(); pile:close(); other:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)

describe("the keep-alive timeout", function()
  it("does not cut off a client still reading a long answer, steadily", function()
    local srv = testing.start{ dir = DIR, args = { "--keepalive-timeout", "1" } }
    local b = testing.bystander(srv, "/echo")
    -- A small receive buffer: the client's kernel does not take the answer
    -- for it. The server's kernel takes some 4 MB of it; the rest waits in
    -- the server's queue for as long as the client takes to read it.
    local s = assert(srv:tcp(5, { rcvbuf = 16384 }))
    assert(s:send("GET /h/size?n=12000000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    local got, t0 = {}, core.now()
    local why
    while true do
      -- what the small buffer holds, every 10 ms: some 4 s for the whole answer
      local more
      more, why = s:receive(2)
      if not more then break end
      got[#got + 1] = more
      core.sleep(0.01)
    end
    local took = core.now() - t0
    s:close()
    assert.equal("closed", why)
    local head, body = table.concat(got):match("^(.-\r\n\r\n)(.*)$")
    assert.equal(200, status_of(head))
    assert.equal(12000000, #body)
    assert.is_true(took > 2, ("read in %.1f s: not slow enough to test the timeout"):format(took))
    local st = b:stop("a 12 MB answer read slowly for longer than the keep-alive time")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("drops a client that stops reading an answer", function()
    local srv = testing.start{ dir = DIR, args = { "--keepalive-timeout", "1" } }
    local b = testing.bystander(srv, "/echo")
    local s = assert(srv:tcp(5, { rcvbuf = 16384 }))
    assert(s:send("GET /h/size?n=8000000 HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert(srv:wait_log("the client stopped reading its answers: dropped", 5, true))
    local data, why = s:receiveAll(5)
    s:close()
    assert.equal("closed", why)
    assert.is_true(#data < 8000000)
    local st = b:stop("a client that stops reading an answer")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)

describe("idle_timeout", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = DIR } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  -- Sends what `step(i)` returns every 0.3 s for up to `seconds`; returns
  -- the close code if the server closed meanwhile.
  local function trickle(c, seconds, step)
    local deadline, i = core.now() + seconds, 0
    while core.now() < deadline do
      i = i + 1
      local bytes = step(i)
      if bytes then c:sendRaw(bytes) end
      local data, kind, code = c:receive(0.3)
      if kind == "close" then return code, data end
      if not data and kind ~= "timeout" then return nil, kind end
    end
  end

  it("closes 1001 a client that trickles a frame one byte at a time", function()
    local b = testing.bystander(srv, "/echo")
    local c = assert(srv:connect("/idle"))
    -- a binary frame of 200 bytes: its header now, then a byte every 0.3 s
    -- (a minute for the frame): no frame is ever complete
    assert(c:sendRaw(string.char(0x82, 0x80 | 126, 0, 200, 1, 2, 3, 4)))
    local code, reason = trickle(c, 6, function() return "x" end)
    assert.equal(1001, code)
    assert.equal("idle timeout", reason)
    local st = b:stop("one byte of a frame every 0.3 s")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
  end)

  it("counts every complete frame: pings and the fragments of an endless message", function()
    local c = assert(srv:connect("/idle"))
    local code = trickle(c, 2.5, function(i)
      -- a ping, a masked 1-byte fragment, the next fragment, ...
      if i % 2 == 1 then return string.char(0x80 | PING, 0x80, 0, 0, 0, 0) end
      local op = i == 2 and BINARY or CONT
      return string.char(op, 0x81, 0, 0, 0, 0) .. "f"
    end)
    assert.is_nil(code)
    assert(c:sendFrame{ opcode = CONT, fin = true, payload = "" })
    -- the pongs, then the message
    local data, kind
    repeat data, kind = c:receive(2) until kind ~= "pong"
    assert.equal("binary", kind)
    assert.is_true(#data >= 3 and data:match("^f+$") ~= nil)
    c:close()
  end)
end)

describe("connections per client address", function()
  it("are refused past --max-connections-per-ip, from that address only", function()
    local srv = testing.start{ dir = DIR, args = { "--max-connections-per-ip", "5" } }
    local b = testing.bystander(srv, "/echo")            -- from 127.0.0.1
    local held, refused = {}, 0
    for _ = 1, 12 do
      local c = srv:connect("/echo", { bind = "127.0.0.2", timeout = 3 })
      if c then held[#held + 1] = c else refused = refused + 1 end
    end
    assert.equal(5, #held)
    assert.equal(7, refused)
    -- the first refusal is logged at once, the others counted into a line a
    -- second later: every refusal is in the counts, in fewer lines
    assert(srv:wait_log("max_connections_per_ip (5) reached: refused 1 connection since", 3, true))
    local counted, lines, deadline = 0, 0, core.now() + 3
    repeat
      counted, lines = 0, 0
      for n in srv:log():gmatch("max_connections_per_ip %(5%) reached: refused (%d+) connections? since") do
        counted, lines = counted + tonumber(n), lines + 1
      end
      if counted < 7 then core.sleep(0.05) end
    until counted >= 7 or core.now() > deadline
    assert.equal(7, counted)
    assert.is_true(lines < 7)
    assert.matches("the last from 127%.0%.0%.2", srv:log())
    -- the admitted ones are served; another address is not counted with them
    for _, c in ipairs(held) do
      assert(c:send("still here"))
      assert.equal("still here", (c:receive(2)))
    end
    local other = assert(srv:connect("/echo", { bind = "127.0.0.3" }))
    other:close()
    -- one leaves: that address may connect once more
    held[1]:close()
    local again = assert(srv:connect("/echo", { bind = "127.0.0.2", retry = { count = 20, interval = 0.05 } }))
    assert(again:send("back"))
    assert.equal("back", (again:receive(2)))
    again:close()
    for i = 2, #held do held[i]:close() end
    local st = b:stop("12 connections from one address, 5 allowed")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)

describe("the connection limit", function()
  it("pauses accepting at --max-connections without spinning, and resumes when one leaves", function()
    local srv = testing.start{ dir = DIR, args = { "--max-connections", "8" } }
    local b = testing.bystander(srv, "/echo")            -- the first of 8
    local held = {}
    for i = 1, 7 do held[i] = assert(srv:connect("/echo")) end
    -- the ninth is taken in by the kernel (the listen backlog), not by the server
    local waiting = assert(srv:tcp(2))
    assert(waiting:send("GET /h/seq HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert(srv:wait_log("max_connections (8) reached: accepting paused", 3, true))
    local cpu0 = cpu_seconds(srv.pid)
    local data, why = waiting:receive(1)                 -- a second of the paused state
    local cpu = cpu_seconds(srv.pid) - cpu0
    assert.is_nil(data)
    assert.equal("timeout", why)
    -- a loop polling a ready listener would take the whole second; the
    -- bystander's hundred echoes take a few milliseconds
    assert.is_true(cpu < 0.3, ("%.2f s of CPU while paused"):format(cpu))
    assert(b:wait(10, 5))
    -- one leaves: the waiting client is accepted and answered
    held[1]:close()
    local head = read_response(waiting, 5)
    assert.equal(200, status_of(head))
    assert(srv:wait_log("accepting resumed", 2, true))
    waiting:close()
    for i = 2, #held do held[i]:close() end
    local st = b:stop("a ninth connection at --max-connections 8")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)

describe("memory for unfinished messages and bodies", function()
  it("closes 1008 the connection whose partial message would pass --max-buffered", function()
    local srv = testing.start{ dir = DIR, args = { "--max-buffered", "4M" } }
    local rss0 = srv:rss()
    local b = testing.bystander(srv, "/echo")
    -- messages that never end: a first fragment of 600 KB each
    local open, busy = {}, 0
    for _ = 1, 12 do
      local c = assert(srv:connect("/echo"))
      assert(c:sendFrame{ opcode = BINARY, fin = false, payload = string.rep("p", 600000) })
      c:ping("sync")
      local data, kind, code = c:receive(3)
      if kind == "pong" then
        open[#open + 1] = c
      else
        assert.equal("close", kind)
        assert.equal(1008, code)
        assert.equal("server busy", data)
        busy = busy + 1
      end
    end
    assert.equal(6, #open)                                -- 6 × 600 000 bytes fit in 4 MiB
    assert.equal(6, busy)
    assert(srv:wait_log("--max-buffered", 2, true))
    assert(b:wait(50, 5))                                 -- while the budget is full
    -- a request body does not fit either: 503
    local status = srv:http("POST", "/h/body", string.rep("q", 900000))
    assert.equal(503, status)
    local _, peak = srv:rss()
    -- the held messages end: what they took is given back
    for _, c in ipairs(open) do
      assert(c:sendFrame{ opcode = CONT, fin = true, payload = "" })
      assert.equal(600000, #assert(c:receive(5)))
    end
    local st2, body = srv:http("POST", "/h/body", string.rep("q", 900000))
    assert.equal(200, st2)
    assert.equal("900000", body)
    for _, c in ipairs(open) do c:close() end
    local st = b:stop(("12 partial messages of 600 KB, --max-buffered 4M (RSS +%.1f MiB, bound 48)")
      :format((peak - rss0) / MiB))
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.is_true(peak - rss0 < 48 * MiB, ("RSS grew by %.1f MiB"):format((peak - rss0) / MiB))
    assert.equal(0, srv:stop())
    assert_budget_balanced(srv)
    srv:cleanup()
  end)

  it("counts the zlib memory of inflate streams held by unfinished compressed messages", function()
    local srv = testing.start{ dir = DIR, args = { "--max-buffered", "1M" } }
    local b = testing.bystander(srv, "/echo")
    local first = core.deflate(string.rep("compressible ", 100))
    local open, busy = {}, 0
    for _ = 1, 40 do
      local c = assert(srv:connect("/echo", { compression = true }))
      -- the first fragment of a compressed message that never ends
      assert(c:sendFrame{ opcode = TEXT, fin = false, rsv = 4, payload = first })
      c:ping("sync")
      local data, kind, code = c:receive(3)
      if kind == "pong" then
        open[#open + 1] = c
      else
        assert.equal(1008, code)
        assert.equal("server busy", data)
        busy = busy + 1
      end
    end
    -- each held stream takes its window (32 KiB) and state (some 7 KiB)
    assert.is_true(#open >= 10 and #open <= 30, #open .. " streams held")
    assert.equal(40 - #open, busy)
    assert(b:wait(50, 5))                                 -- while the budget is full
    for _, c in ipairs(open) do c:close() end
    local st = b:stop("40 unfinished compressed messages, --max-buffered 1M")
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    assert.equal(0, srv:stop())
    assert_budget_balanced(srv)
    srv:cleanup()
  end)
end)
