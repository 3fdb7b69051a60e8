-- --metrics: the Prometheus families and /healthz, against a live server
-- (docs/operations.md). Every count is asserted exactly; with -w 2
-- (MOONWS_TEST_WORKERS=2) they are the process's sums.
local testing = require "moonws.testing"
local client = require "moonws.client"
local core = require "moonws.core"



-- The samples of an exposition: name{labels} -> value (as a number).
local function parse(body)
  local t = {}
  for line in body:gmatch("[^\n]+") do
    if not line:match("^#") then
      local key, value = line:match("^(.*) (%S+)$")
      assert(key, "not a sample line: " .. line)
      t[key] = tonumber(value) or value
    end
  end
  return t
end

local function scrape(srv)
  local status, body, headers = srv:scrape()
  assert.equal(200, status)
  assert.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
  return parse(body), body
end

-- Scrapes until sample key has value want (counts land as the workers
-- get to them), then returns the samples.
local function scrape_until(srv, key, want, timeout)
  local deadline = core.now() + (timeout or 5)
  while true do
    local m, body = scrape(srv)
    if m[key] == want then return m, body end
    assert(core.now() < deadline, ("%s never became %s:\n%s"):format(key, tostring(want), body))
    core.sleep(0.02)
  end
end

describe("--metrics", function()
  it("counts connections, messages, closes, handler calls, requests and reloads exactly", function()
    local dir = testing.tmpdir()
    assert(os.execute("cp spec/services/metrics/chat.lua " .. dir .. "/"))
    local srv <close> = testing.start{ dir = dir, metrics = true }
    assert.matches("^http://127%.0%.0%.1:%d+/metrics$", srv.metrics_url)
    local P = '{path="/m/chat"'

    local c1 = assert(srv:connect("/m/chat"))
    local c2 = assert(srv:connect("/m/chat"))
    local m0 = scrape_until(srv, "moonws_connections" .. P .. "}", 2)
    assert.equal(2, m0["moonws_connections_opened_total" .. P .. "}"])

    assert(c1:send("hello"))
    assert.equal("hello", c1:receive(5))
    assert(c1:sendBinary("\1\2\3"))
    assert.equal("\1\2\3", c1:receive(5))
    local status = srv:http("POST", "/m/chat/broadcast", "all")
    assert.equal(200, status)
    assert.equal("all", c1:receive(5))
    assert.equal("all", c2:receive(5))
    assert.equal(1000, c2:close(1000))
    assert.equal(4001, c1:close(4001, "bye"))

    -- A handler error and a runaway: both close 1011.
    local c3 = assert(srv:connect("/m/chat"))
    assert(c3:send("boom"))
    assert.equal(1011, testing.until_close(c3, 5))
    local c4 = assert(srv:connect("/m/chat"))
    assert(c4:send("spin"))
    assert.equal(1011, testing.until_close(c4, 10))

    -- Requests no route answered.
    assert.equal(404, (srv:http("GET", "/nope")))
    assert.equal(426, (srv:http("GET", "/m/chat")))

    -- A reload applied, then one refused (the old version keeps serving).
    testing.write_file(dir .. "/extra.lua", 'return { path = "/m/extra", onText = function(c, t) c:send(t) end }\n')
    assert(srv:wait_log("loaded extra.lua at /m/extra", 5, true))
    testing.write_file(dir .. "/extra.lua", 'return { path = "/m/extra", onText = function(c, t) c:send(t) end\n')
    assert(srv:wait_log("(the old version keeps serving)", 5, true))

    local m, body = scrape_until(srv, "moonws_connections" .. P .. "}", 0)
    m = scrape_until(srv, 'moonws_closes_total{path="/m/chat",code="1011"}', 2)
    local want = {
      ["moonws_connections_opened_total" .. P .. "}"] = 4,
      ["moonws_messages_received_total" .. P .. ',kind="text"}'] = 3,
      ["moonws_messages_received_total" .. P .. ',kind="binary"}'] = 1,
      ["moonws_message_bytes_received_total" .. P .. ',kind="text"}'] = 13,
      ["moonws_message_bytes_received_total" .. P .. ',kind="binary"}'] = 3,
      -- the echo and the broadcast's two receivers
      ["moonws_messages_sent_total" .. P .. ',kind="text"}'] = 3,
      ["moonws_message_bytes_sent_total" .. P .. ',kind="text"}'] = 11,
      ["moonws_messages_sent_total" .. P .. ',kind="binary"}'] = 1,
      ["moonws_message_bytes_sent_total" .. P .. ',kind="binary"}'] = 3,
      ['moonws_closes_total{path="/m/chat",code="1000"}'] = 1,
      ['moonws_closes_total{path="/m/chat",code="4xxx"}'] = 1,
      ['moonws_closes_total{path="/m/chat",code="1011"}'] = 2,
      -- onText 3, onBinary 1, the endpoint 1
      ["moonws_handler_calls_total" .. P .. "}"] = 5,
      ["moonws_handler_errors_total" .. P .. "}"] = 2,
      ["moonws_handler_budget_exceeded_total" .. P .. "}"] = 1,
      ["moonws_backpressure_closes_total" .. P .. "}"] = 0,
      ['moonws_http_requests_total{route="websocket /m/chat",status="101"}'] = 4,
      ['moonws_http_requests_total{route="POST /m/chat/broadcast",status="200"}'] = 1,
      ['moonws_http_requests_total{route="(none)",status="404"}'] = 1,
      ['moonws_http_requests_total{route="(none)",status="426"}'] = 1,
      ['moonws_reloads_total{result="ok"}'] = 1,
      ['moonws_reloads_total{result="error"}'] = 1,
      ['moonws_reloads_total{result="removed"}'] = 0,
      ["moonws_workers"] = srv.workers,
    }
    for key, value in pairs(want) do
      assert.equal(value, m[key], key .. " in:\n" .. body)
    end
    -- The sampled histogram: cumulative, +Inf = _count, at most every call.
    local inf = m['moonws_handler_duration_seconds_bucket{path="/m/chat",le="+Inf"}']
    assert.equal(inf, m['moonws_handler_duration_seconds_count{path="/m/chat"}'])
    assert.is_true(inf <= 5)
    assert.is_true(m["process_resident_memory_bytes"] > 0)
    assert.is_true(m["process_open_fds"] > 0)
    assert.is_true(m["process_start_time_seconds"] > 0)
    -- The new service has its series.
    assert.equal(0, m['moonws_connections{path="/m/extra"}'])
    assert.equal(0, srv:stop())
    os.execute("rm -rf " .. dir)
  end)

  it("counts compression both ways", function()
    local srv <close> = testing.start{ dir = "spec/services/metrics", metrics = true }
    local c = assert(srv:connect("/m/chat", { compression = true }))
    local msg = ("moonws "):rep(200)
    assert(c:send(msg))
    assert.equal(msg, c:receive(5))
    c:close(1000)
    local m, body = scrape_until(srv, 'moonws_connections{path="/m/chat"}', 0)
    local din = m['moonws_deflate_input_bytes_total{path="/m/chat"}']
    local dout = m['moonws_deflate_output_bytes_total{path="/m/chat"}']
    local iin = m['moonws_inflate_input_bytes_total{path="/m/chat"}']
    local iout = m['moonws_inflate_output_bytes_total{path="/m/chat"}']
    assert.equal(#msg, din, body)
    assert.equal(#msg, iout, body)
    assert.is_true(dout > 0 and dout < #msg / 10, body)
    assert.is_true(iin > 0 and iin < #msg / 10, body)
    assert.equal(0, srv:stop())
  end)

  it("answers /healthz 200 while serving and 503 while draining", function()
    local srv <close> = testing.start{ dir = "spec/services/metrics", metrics = true }
    local status, body = srv:scrape("/healthz")
    assert.equal(200, status)
    assert.equal("ok\n", body)
    assert.equal(404, (srv:scrape("/nope")))
    -- A client that does not answer the server's close keeps the drain going.
    local c = assert(srv:connect("/m/chat"))
    scrape_until(srv, 'moonws_connections{path="/m/chat"}', 1)
    assert(srv:signal("TERM"))
    local deadline = core.now() + 5
    repeat
      status, body = srv:scrape("/healthz")
      if status ~= 503 then core.sleep(0.02) end
    until status == 503 or core.now() > deadline
    assert.equal(503, status)
    assert.equal("draining\n", body)
    -- /metrics still answers while draining.
    assert.equal(200, (srv:scrape()))
    -- The client now reads the close and answers it: the server ends.
    assert.equal(1001, testing.until_close(c, 5))
    assert.equal(0, srv:stop())
  end)

  it("refuses a bad --metrics address with exit 2", function()
    local bin = testing.find_bin()
    local ok, _, code = os.execute(bin .. " --metrics nonsense:port spec/services/metrics 2>/dev/null")
    assert.is_falsy(ok)
    assert.equal(2, code)
  end)
end)
