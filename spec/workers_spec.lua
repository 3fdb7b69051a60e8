-- Several workers (-w N): every worker loads every service, connections
-- spread over them, and what the reference calls process-wide — broadcast,
-- publish, moonws.send, moonws.count, moonws.dict, hot reload, shutdown —
-- reaches or counts every worker (docs/reference.md, "Workers").
local testing = require "moonws.testing"
local client = require "moonws.client"
local cjson = require "cjson"

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

-- Opens n connections to path; each is { c = client, worker = w, id = id }.
local function open_many(srv, n, path)
  local conns = {}
  for i = 1, n do
    local c = assert(srv:connect(path or "/probe"))
    local hello = assert(decode(assert(c:receive(5))))
    assert.equal("hello", hello.op)
    conns[i] = { c = c, worker = math.tointeger(hello.worker), id = math.tointeger(hello.id),
                 workers = math.tointeger(hello.workers) }
  end
  return conns
end

local function close_all(conns)
  for _, k in ipairs(conns) do k.c:close() end
end

-- The workers seen among conns, as a set, and how many.
local function workers_of(conns)
  local seen, n = {}, 0
  for _, k in ipairs(conns) do
    if not seen[k.worker] then seen[k.worker] = true; n = n + 1 end
  end
  return seen, n
end

-- The next message of c that is op (others of other ops are skipped).
local function next_op(c, op, timeout)
  local deadline = os.time() + (timeout or 5)
  while os.time() <= deadline do
    local msg = c:receive(1)
    local v = msg and decode(msg)
    if v and v.op == op then return v end
  end
  return nil
end

-- Two connections on different workers (among conns).
local function on_two_workers(conns)
  for _, a in ipairs(conns) do
    for _, b in ipairs(conns) do
      if a.worker ~= b.worker then return a, b end
    end
  end
end

for _, n in ipairs({ 2, 4 }) do
  describe("with -w " .. n, function()
    local srv, conns

    setup(function()
      srv = testing.start{ dir = "spec/services/workers", workers = n }
      -- Enough that every worker gets some: the chance that 60 connections
      -- spread by the kernel miss one of 4 workers is below 1e-7.
      conns = open_many(srv, 60)
    end)

    teardown(function()
      close_all(conns)
      assert.equal(0, srv:stop())
      srv:cleanup()
    end)

    it("spreads connections over every worker, and tells each its number", function()
      local seen, k = workers_of(conns)
      assert.equal(n, k)
      for w = 1, n do assert.is_true(seen[w]) end
      for _, c in ipairs(conns) do assert.equal(n, c.workers) end
      -- ids are unique in the process, and exact as JSON numbers
      local ids = {}
      for _, c in ipairs(conns) do
        assert.is_nil(ids[c.id])
        ids[c.id] = true
        assert.is_true(c.id > 0 and c.id < 2 ^ 53)
      end
    end)

    it("counts every worker's connections in moonws.count", function()
      local asker = conns[1].c
      asker:send(cjson.encode({ op = "count", path = "/probe" }))
      assert.equal(#conns, math.tointeger(next_op(asker, "count").n))
      local extra = open_many(srv, 5)
      asker:send(cjson.encode({ op = "count", path = "/probe" }))
      assert.equal(#conns + 5, math.tointeger(next_op(asker, "count").n))
      close_all(extra)
      -- closing is counted at once: poll for the figure
      local deadline = os.time() + 5
      local got
      repeat
        asker:send(cjson.encode({ op = "count", path = "/probe" }))
        got = math.tointeger(next_op(asker, "count").n)
      until got == #conns or os.time() > deadline
      assert.equal(#conns, got)
    end)

    it("publishes from two workers to subscribers on every worker, once each, in order", function()
      for _, k in ipairs(conns) do
        k.c:send(cjson.encode({ op = "subscribe", topic = "t" }))
        assert(next_op(k.c, "subscribed"))
      end
      local a, b = on_two_workers(conns)
      a.c:send(cjson.encode({ op = "publish", topic = "t", from = "a", n = 50 }))
      b.c:send(cjson.encode({ op = "publish", topic = "t", from = "b", n = 50 }))
      for _, k in ipairs(conns) do
        local next_i = { a = 1, b = 1 }
        local got = 0
        while got < 100 do
          local v = next_op(k.c, "msg", 5)
          assert(v, "subscriber on worker " .. k.worker .. " got " .. got .. " of 100")
          assert.equal(next_i[v.from], math.tointeger(v.i), "order from " .. v.from)
          next_i[v.from] = next_i[v.from] + 1
          got = got + 1
        end
        -- and nothing more: no duplicate arrives
        k.c:send(cjson.encode({ op = "count", path = "/probe" }))
        assert(next_op(k.c, "count"))
      end
    end)

    it("broadcasts to the connections of every worker, once each, in order", function()
      local a, b = on_two_workers(conns)
      a.c:send(cjson.encode({ op = "broadcast", path = "/probe", from = "a", n = 30 }))
      b.c:send(cjson.encode({ op = "broadcast", path = "/probe", from = "b", n = 30 }))
      for _, k in ipairs(conns) do
        local next_i = { a = 1, b = 1 }
        for _ = 1, 60 do
          local v = next_op(k.c, "msg", 5)
          assert(v)
          assert.equal(next_i[v.from], math.tointeger(v.i))
          next_i[v.from] = next_i[v.from] + 1
        end
        k.c:send(cjson.encode({ op = "count", path = "/probe" }))
        assert(next_op(k.c, "count"))
      end
    end)

    it("sends to a connection on another worker by id, and says closed for a gone one", function()
      local a, b = on_two_workers(conns)
      a.c:send(cjson.encode({ op = "send", id = b.id, text = "across" }))
      local r = next_op(a.c, "sent")
      assert.is_true(r.ok)
      local v = next_op(b.c, "direct")
      assert.equal("across", v.text)
      assert.equal(a.id, math.tointeger(v.from))
      local gone = open_many(srv, 1)[1]
      local id = gone.id
      gone.c:close()
      local deadline = os.time() + 5
      repeat
        a.c:send(cjson.encode({ op = "send", id = id, text = "too late" }))
        r = next_op(a.c, "sent")
      until not r.ok or os.time() > deadline
      assert.is_false(r.ok)
      assert.equal("closed", r.err)
      -- an id that never was
      a.c:send(cjson.encode({ op = "send", id = 12345678, text = "nobody" }))
      r = next_op(a.c, "sent")
      assert.is_false(r.ok)
      assert.equal("closed", r.err)
    end)

    it("counts connections by concrete path under a parameter path, on every worker", function()
      local rs, seen, k = {}, {}, 0
      while (k < n or #rs < 10) and #rs < 100 do
        local room = #rs % 2 == 0 and "a" or "b"
        local c = assert(srv:connect("/rooms/" .. room))
        local w = tonumber((assert(c:receive(5))))
        if not seen[w] then seen[w] = true; k = k + 1 end
        rs[#rs + 1] = c
      end
      assert.equal(n, k)
      local a = (#rs + 1) // 2
      rs[1]:send("/rooms/a")
      assert.equal(tostring(a), (rs[1]:receive(5)))
      rs[1]:send("/rooms/b")
      assert.equal(tostring(#rs - a), (rs[1]:receive(5)))
      rs[1]:send("/rooms/:room")
      assert.equal(tostring(#rs), (rs[1]:receive(5)))
      rs[1]:send("/rooms/nobody")
      assert.equal("0", (rs[1]:receive(5)))
      for _, c in ipairs(rs) do c:close() end
    end)

    it("sums moonws.dict increments from connections on every worker exactly", function()
      local first = conns[1].c
      first:send(cjson.encode({ op = "total" }))
      local before = math.tointeger(next_op(first, "total").n or 0) or 0
      for _, k in ipairs(conns) do
        k.c:send(cjson.encode({ op = "incr", n = 50 }))
      end
      for _, k in ipairs(conns) do assert(next_op(k.c, "incremented")) end
      first:send(cjson.encode({ op = "total" }))
      assert.equal(before + 50 * #conns, math.tointeger(next_op(first, "total").n))
    end)
  end)
end



local function versioned(v, extra)
  return ([[
%s
local s = {}
function s.onOpen(caller) caller:send("hello " .. moonws.worker) end
function s.onText(caller, t) return "%s" end
return s
]]):format(extra or "", v)
end

describe("hot reload with -w 4", function()
  it("reaches connections on every worker, and a version one worker refuses is refused by all",
    function()
      local dir = testing.tmpdir()
      testing.write_file(dir .. "/svc.lua", versioned("v1"))
      local srv <close> = testing.start{ dir = dir, workers = 4 }
      assert.equal(1, srv:count_log("serving svc.lua at /svc"))
      local cs, seen, k = {}, {}, 0
      while k < 4 and #cs < 200 do
        local c = assert(srv:connect("/svc"))
        local w = tonumber(assert(c:receive(5)):match("^hello (%d+)$"))
        if not seen[w] then seen[w] = true; k = k + 1 end
        cs[#cs + 1] = c
      end
      assert.equal(4, k)
      testing.write_file(dir .. "/svc.lua", versioned("v2"))
      assert(srv:wait_log("reloaded svc.lua at /svc (" .. #cs .. " connections kept)", 5, true))
      for _, c in ipairs(cs) do
        c:send("version?")
        assert.equal("v2", (c:receive(5)))
      end
      -- refused on worker 3 alone: refused everywhere, and said once
      testing.write_file(dir .. "/svc.lua", versioned("v3", 'if moonws.worker == 3 then error("not on 3") end'))
      assert(srv:wait_log("svc.lua:1: not on 3 (the old version keeps serving)", 5, true))
      for _, c in ipairs(cs) do
        c:send("version?")
        assert.equal("v2", (c:receive(5)))
      end
      assert.equal(1, srv:count_log("not on 3 (the old version keeps serving)"))
      -- and a path that differs between workers is refused too
      testing.write_file(dir .. "/svc.lua", [[
local s = { path = moonws.worker == 1 and "/svc" or "/other" }
function s.onText(caller, t) return "v4" end
return s
]])
      assert(srv:wait_log("svc.lua:1: its path differs between workers (/svc on worker 1, /other " ..
        "on worker 2) (the old version keeps serving)", 5, true))
      for _, c in ipairs(cs) do
        c:send("version?")
        assert.equal("v2", (c:receive(5)))
      end
      -- SIGHUP reloads every worker, and logs it once for all of them
      testing.write_file(dir .. "/svc.lua", versioned("v5"))
      local v5 = "reloaded svc.lua at /svc (" .. #cs .. " connections kept)"
      local deadline = os.time() + 5
      while srv:count_log(v5) < 2 and os.time() <= deadline do os.execute("sleep 0.05") end
      local before = srv:count_log("reloaded svc.lua at /svc")
      assert.equal(2, before)
      srv:signal("HUP")
      assert(srv:wait_log("SIGHUP: reloading every service", 5, true))
      deadline = os.time() + 5
      while srv:count_log(v5) == before and os.time() <= deadline do os.execute("sleep 0.05") end
      assert.equal(before + 1, srv:count_log(v5))
      for _, c in ipairs(cs) do
        c:send("version?")
        assert.equal("v5", (c:receive(5)))
      end
      -- a service that moves to another path takes its count along
      testing.write_file(dir .. "/svc.lua", [[
local s = { path = "/moved" }
function s.onText(caller, t) return tostring(moonws.count(t)) end
return s
]])
      assert(srv:wait_log("reloaded svc.lua at /moved (" .. #cs .. " connections kept)", 5, true))
      cs[1]:send("/moved")
      assert.equal(tostring(#cs), (cs[1]:receive(5)))
      cs[1]:send("/svc")
      assert.equal("0", (cs[1]:receive(5)))
      for _, c in ipairs(cs) do c:close() end
      assert.equal(0, srv:stop())
      os.execute("rm -rf " .. dir)
    end)
end)

describe("shutdown with -w 4", function()
  it("closes every client of every worker 1001 and exits 0", function()
    local srv <close> = testing.start{ dir = "spec/services/workers", workers = 4 }
    local conns = open_many(srv, 60)
    local _, k = workers_of(conns)
    assert.equal(4, k)
    srv:signal("TERM")
    for _, c in ipairs(conns) do
      local code = testing.until_close(c.c, 5)
      assert.equal(1001, code)
    end
    assert.equal(0, srv:stop())
  end)
end)

describe("listening with -w 2", function()
  it("refuses a port another server's reuseport group holds", function()
    local a <close> = testing.start{ dir = "spec/services/workers", workers = 2 }
    local bin = testing.find_bin()
    local out = os.tmpname()
    local _, _, code = os.execute(("%s -w 2 -l 127.0.0.1:%d spec/services/workers >/dev/null 2>%s")
      :format(bin, a.port, out))
    local f = assert(io.open(out))
    local err = f:read("a")
    f:close()
    os.remove(out)
    assert.equal(1, code)
    assert.matches("cannot listen on 127.0.0.1:" .. a.port .. ": Address already in use", err, 1, true)
    -- the first server still serves
    local c = assert(a:connect("/probe"))
    assert(c:receive(5))
    c:close()
    assert.equal(0, a:stop())
  end)
end)

describe("a worker's inbox over its cap (16 MiB)", function()
  it("drops what would pass it, logs it, answers moonws.send with busy, and serves on", function()
    local srv <close> = testing.start{ dir = "spec/services/workers", workers = 2 }
    local conns = open_many(srv, 20)
    local holders = open_many(srv, 10, "/hold")
    local a, h
    for _, k in ipairs(conns) do
      for _, x in ipairs(holders) do
        if not a and k.worker ~= x.worker then a, h = k, x end
      end
    end
    local bystander
    for _, k in ipairs(conns) do
      if k.worker == a.worker and k ~= a then bystander = k end
    end
    assert(a and bystander, "connections on both workers")
    -- h's worker is held for 2 s: its inbox fills with 24 publishes of 1 MiB
    h.c:send(cjson.encode({ op = "hold", seconds = 2 }))
    assert(srv:wait_log("holding worker " .. h.worker, 5, true))
    a.c:send(cjson.encode({ op = "flood", topic = "nobody", n = 24, size = 1024 * 1024 }))
    assert(next_op(a.c, "flooded", 5))
    -- 15 of them got in: a message of 2 MiB does not
    a.c:send(cjson.encode({ op = "send", id = h.id, size = 2 * 1024 * 1024 }))
    local r = next_op(a.c, "sent", 5)
    assert.is_false(r.ok)
    assert.equal("busy", r.err)
    assert(srv:wait_log("inbox of worker " .. h.worker .. " full (16777216 bytes): ", 5, true))
    -- the publisher's worker serves on meanwhile, and the held one once it is done
    bystander.c:send(cjson.encode({ op = "count", path = "/probe" }))
    assert.equal(#conns, math.tointeger(next_op(bystander.c, "count", 5).n))
    assert(next_op(h.c, "held", 5))
    a.c:send(cjson.encode({ op = "send", id = h.id, text = "room again" }))
    assert.is_true(next_op(a.c, "sent", 5).ok)
    assert.equal("room again", next_op(h.c, "direct", 5).text)
    close_all(conns)
    close_all(holders)
    assert.equal(0, srv:stop())
  end)
end)
