-- HTTP/1.1: parsing, limits and their statuses (README, "Limits"), keep-alive,
-- bodies, endpoints and static files.
local testing = require "moonws.testing"

-- Sends raw bytes on a fresh connection; returns everything until close.
local function exchange(srv, bytes, timeout)
  local s = assert(srv:tcp())
  assert(s:send(bytes))
  local data, why = s:receiveAll(timeout or 5)
  s:close()
  return data, why
end

local function status_of(resp)
  return tonumber(resp:match("^HTTP/1%.1 (%d%d%d)"))
end

describe("HTTP", function()
  local srv, static
  lazy_setup(function()
    static = os.tmpname()
    os.remove(static)
    assert(os.execute("mkdir -p " .. static .. "/sub && cp examples/public/index.html " .. static ..
      "/ && echo 'body { }' > " .. static .. "/sub/site.css && echo secret > " .. static ..
      ".secret && head -c 3000000 /dev/urandom > " .. static .. "/big.bin && echo x > " .. static ..
      ".secret && ln -s " .. static .. ".secret " .. static .. "/leak && ln -s sub/site.css " ..
      static .. "/inside.css && mkfifo " .. static .. "/pipe"))
    srv = testing.start{ dir = "spec/services/rt", static = static }
  end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. static .. " " .. static .. ".secret")
  end)

  it("answers an endpoint with its status, body and headers", function()
    local status, body, h = srv:http("POST", "/probe/echo-request", "payload")
    assert.equal(201, status)
    assert.equal("payload", body)
    assert.equal("yes", h["x-reply"])
    assert.equal("application/octet-stream", h["content-type"])
  end)

  it("hands the request to the endpoint", function()
    local status, body = srv:http("GET", "/probe/echo-request?a=1&b=x%20y&c=+z+", nil,
      { ["User-Agent"] = "spec" })
    assert.equal(200, status)
    local req = require("cjson").decode(body)
    assert.same({ a = "1", b = "x y", c = " z " }, req.query)
    assert.equal("GET", req.method)
    assert.equal("/probe/echo-request", req.path)
    assert.equal("spec", req.ua)
    assert.is_true(req.remote_ok)
  end)

  it("sends a table body as JSON", function()
    local status, body, h = srv:http("GET", "/probe/events")
    assert.equal(200, status)
    assert.equal("application/json", h["content-type"])
    assert.is_table(require("cjson").decode(body))
  end)

  it("answers 500 when an endpoint fails, and goes on", function()
    local status = srv:http("GET", "/probe/fail")
    assert.equal(500, status)
    assert(srv:wait_log("endpoint failure", 2, true))
    assert.equal(500, (srv:http("GET", "/probe/badheaders")))
    -- a table body JSON cannot hold: encoded after the call, still contained
    assert.equal(500, (srv:http("GET", "/probe/notjson")))
    assert(srv:wait_log("returned a body JSON cannot hold", 2, true))
    assert.equal(200, (srv:http("GET", "/probe/events")))
  end)

  it("answers 404 for an unknown path", function()
    assert.equal(404, (srv:http("GET", "/nothing/here")))
  end)

  it("answers 405 with Allow for a known path and another method", function()
    local status, _, h = srv:http("DELETE", "/probe/events")
    assert.equal(405, status)
    assert.equal("GET", h["allow"])
  end)

  it("answers 426 with Sec-WebSocket-Version to a plain GET of a service", function()
    local status, _, h = srv:http("GET", "/probe")
    assert.equal(426, status)
    assert.equal("13", h["sec-websocket-version"])
    assert.equal("websocket", h["upgrade"])
  end)

  it("answers 400 to a malformed request line", function()
    local resp = exchange(srv, "GET  /x HTTP/1.1\r\n\r\n")
    assert.equal(400, status_of(resp))
    assert.equal(400, status_of(exchange(srv, "GET /x HTTP/2.0\r\nHost: a\r\n\r\n")))
    assert.equal(400, status_of(exchange(srv, "GET x HTTP/1.1\r\nHost: a\r\n\r\n")))
  end)

  it("answers 400 to bare LF, obs-fold and a space before the colon", function()
    assert.equal(400, status_of(exchange(srv, "GET / HTTP/1.1\nHost: a\n\n")))
    assert.equal(400, status_of(exchange(srv, "GET / HTTP/1.1\r\nHost: a\r\n  folded\r\n\r\n")))
    assert.equal(400, status_of(exchange(srv, "GET / HTTP/1.1\r\nHost : a\r\n\r\n")))
  end)

  it("answers 431 to a head over 8 KiB", function()
    local resp = exchange(srv, "GET / HTTP/1.1\r\nX-Big: " .. string.rep("a", 9000) .. "\r\n\r\n")
    assert.equal(431, status_of(resp))
    assert(srv:wait_log("): 431: ", 2, true))
  end)

  it("answers 431 to more than 64 header fields", function()
    local lines = {}
    for i = 1, 70 do lines[i] = "X-" .. i .. ": v\r\n" end
    local resp = exchange(srv, "GET / HTTP/1.1\r\n" .. table.concat(lines) .. "\r\n")
    assert.equal(431, status_of(resp))
  end)

  it("answers 413 to a body over 1 MiB", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
    assert.equal(413, status_of(resp))
    assert(srv:wait_log("413: request body too large", 2, true))
  end)

  it("answers 400 to conflicting body lengths", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    assert.equal(400, status_of(resp))
    resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc")
    assert.equal(400, status_of(resp))
  end)

  it("answers 501 to a transfer coding other than chunked", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert.equal(501, status_of(resp))
  end)

  it("reads chunked request bodies", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n")
    assert.equal(201, status_of(resp))
    assert.matches("\r\n\r\nWikipedia$", resp)
  end)

  it("answers 413 to a chunked body over 1 MiB, as soon as a chunk size says so", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n100001\r\n")
    assert.equal(413, status_of(resp))
    resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n80000\r\n" .. string.rep("x", 0x80000) .. "\r\n80001\r\n")
    assert.equal(413, status_of(resp))
    resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n")
    assert.equal(413, status_of(resp))
  end)

  it("answers 400 to two lists of transfer codings (a smuggling pattern)", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n")
    assert.equal(400, status_of(resp))
  end)

  it("answers 400 to an HTTP/1.1 request without a Host or with two", function()
    local resp = exchange(srv, "GET /probe/events HTTP/1.1\r\n\r\n")
    assert.equal(400, status_of(resp))
    assert.matches("exactly one Host", resp)
    resp = exchange(srv, "GET /probe/events HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert.equal(400, status_of(resp))
    resp = exchange(srv, "GET /probe/events HTTP/1.0\r\n\r\n")
    assert.equal(200, status_of(resp))
  end)

  it("answers 400 to a malformed chunked body", function()
    local resp = exchange(srv, "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert.equal(400, status_of(resp))
  end)

  it("reads a body that arrives in pieces, after 100 Continue", function()
    local s = assert(srv:tcp())
    s:send("POST /probe/echo-request HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
    assert.matches("^HTTP/1%.1 100 Continue\r\n\r\n", assert(s:receive(2)))
    s:send("01234")
    s:send("56789")
    local resp = assert(s:receive(2))
    assert.equal(201, status_of(resp))
    assert.matches("\r\n\r\n0123456789$", resp)
    s:close()
  end)

  it("keeps a connection alive and answers pipelined requests in order", function()
    local s = assert(srv:tcp())
    s:send("GET /probe/echo-request?n=1 HTTP/1.1\r\nHost: a\r\n\r\n" ..
           "POST /probe/echo-request HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" ..
           "GET /probe/echo-request?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    local data, why = s:receiveAll(5)
    s:close()
    assert.equal("closed", why)
    local statuses = {}
    for st in data:gmatch("HTTP/1%.1 (%d%d%d)") do statuses[#statuses + 1] = tonumber(st) end
    assert.same({ 200, 201, 200 }, statuses)
    assert.is_truthy(data:find('"n":"1"', 1, true) < data:find('"n":"3"', 1, true))
  end)

  it("keeps an HTTP/1.0 connection that asks for it alive, and says so", function()
    local s = assert(srv:tcp())
    s:send("GET /probe/events HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    local first = ""
    repeat first = first .. assert(s:receive(2)) until first:find("\r\n\r\n", 1, true)
    assert.matches("\r\nConnection: keep%-alive\r\n", first)
    s:send("GET /sub/site.css HTTP/1.0\r\n\r\n")
    local rest, why = s:receiveAll(5)
    s:close()
    assert.equal("closed", why)
    assert.matches("HTTP/1%.1 200 OK\r\n.*body { }\n$", rest)
  end)

  it("closes an HTTP/1.0 connection after the response", function()
    local data, why = exchange(srv, "GET /probe/events HTTP/1.0\r\n\r\n")
    assert.equal(200, status_of(data))
    assert.equal("closed", why)
  end)

  it("serves static files with their Content-Type", function()
    local status, body, h = srv:http("GET", "/sub/site.css")
    assert.equal(200, status)
    assert.equal("body { }\n", body)
    assert.equal("text/css; charset=utf-8", h["content-type"])
    status, body, h = srv:http("GET", "/")
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    assert.matches("<html", body, 1, true)
  end)

  it("streams a large file whole, and answers a request pipelined behind it in turn", function()
    local f = assert(io.open(static .. "/big.bin", "rb"))
    local want = f:read("a")
    f:close()
    local s = assert(srv:tcp())
    s:send("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /sub/site.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    local data, why = s:receiveAll(10)
    s:close()
    assert.equal("closed", why)
    local head, rest = data:match("^(.-\r\n\r\n)(.*)$")
    assert.equal(200, status_of(head))
    assert.matches("Content%-Length: 3000000\r\n", head)
    assert.equal(want, rest:sub(1, 3000000))
    local second = rest:sub(3000001)
    assert.equal(200, status_of(second))
    assert.matches("\r\n\r\nbody { }\n$", second)
  end)

  it("answers a request pipelined behind a large file when the client has closed its side", function()
    local s = assert(srv:tcp())
    s:send("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /sub/site.css HTTP/1.1\r\nHost: a\r\n\r\n")
    s:shutdown()
    local data, why = s:receiveAll(10)
    s:close()
    assert.equal("closed", why)
    local head, rest = data:match("^(.-\r\n\r\n)(.*)$")
    assert.equal(200, status_of(head))
    assert.equal(200, status_of(rest:sub(3000001)))
    assert.matches("\r\n\r\nbody { }\n$", rest)
  end)

  it("answers hundreds of requests pipelined behind a large file in one send", function()
    -- 400 requests (about 16 KiB) wait while the file streams; then each is
    -- answered in turn, and the server is still there for the next client.
    local s = assert(srv:tcp())
    local reqs = { "GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n" }
    for _ = 1, 399 do reqs[#reqs + 1] = "GET /sub/site.css HTTP/1.1\r\nHost: a\r\n\r\n" end
    reqs[#reqs + 1] = "GET /sub/site.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert(s:send(table.concat(reqs)))
    local data, why = s:receiveAll(10)
    s:close()
    assert.equal("closed", why)
    local lengths, pos = {}, 1
    while pos <= #data do
      local head_end = assert(data:find("\r\n\r\n", pos, true))
      local head = data:sub(pos, head_end)
      assert.equal(200, status_of(head))
      local len = tonumber(head:match("Content%-Length: (%d+)"))
      lengths[#lengths + 1] = len
      pos = head_end + 4 + len
    end
    assert.equal(401, #lengths)
    assert.equal(3000000, lengths[1])
    assert.equal(9, lengths[401])
    assert.equal(200, (srv:http("GET", "/sub/site.css")))
  end)

  it("drops a client that stops reading a static file, after 30 s without progress", function()
    -- 16 MiB is more than the loopback buffers take: the server is left
    -- holding the rest, with a client that never reads
    assert(os.execute("head -c 16777216 /dev/zero > " .. static .. "/huge.bin"))
    local s = assert(srv:tcp())
    assert(s:send("GET /huge.bin HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert(srv:wait_log("the client stopped reading a static file: dropped", 40, true))
    local data, why = s:receiveAll(5)
    s:close()
    assert.equal("closed", why)
    assert.is_true(#data < 16777216)
    os.remove(static .. "/huge.bin")
  end)

  it("answers HEAD with the length and no body", function()
    local resp = exchange(srv, "HEAD /sub/site.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert.equal(200, status_of(resp))
    assert.matches("Content%-Length: 9\r\n", resp)
    assert.matches("\r\n\r\n$", resp)
  end)

  it("answers 405 with Allow to another method on a static file", function()
    local status, _, h = srv:http("POST", "/sub/site.css", "x")
    assert.equal(405, status)
    assert.equal("GET, HEAD", h["allow"])
    assert.equal(404, (srv:http("POST", "/sub/none.css", "x")))
  end)

  it("answers 404 for a FIFO in the static folder without waiting on it", function()
    local status = srv:http("GET", "/pipe", nil, nil, 3)
    assert.equal(404, status)
    assert.equal(200, (srv:http("GET", "/sub/site.css")))
  end)

  it("refuses paths that leave the static folder", function()
    assert.equal(403, status_of(exchange(srv, "GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n")))
    assert.equal(403, status_of(exchange(srv, "GET /sub/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n")))
    assert.equal(403, (srv:http("GET", "/leak")))
    assert.equal(200, (srv:http("GET", "/inside.css")))
    assert.equal(404, (srv:http("GET", "/missing.txt")))
  end)

  it("drops a connection that does not finish its request in 10 s", function()
    local s = assert(srv:tcp())
    s:send("GET /probe HTTP/1.1\r\nHost: a\r\n")
    local t0 = require("moonws.core").now()
    local data, why = s:receiveAll(14)
    s:close()
    assert.equal("closed", why)
    assert.equal("", data)
    assert.is_true(require("moonws.core").now() - t0 >= 9)
  end)
end)
