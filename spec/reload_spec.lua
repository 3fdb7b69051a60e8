-- Hot reload (README, "Hot reload"): every way an editor saves, bad versions that
-- must not replace good ones, and connections that must survive.
local testing = require "moonws.testing"
local core = require "moonws.core"

-- A service whose version shows in every reply; caller.data and
-- moonws.shared keep counters across versions.
local function service(version, extra)
  return ([[
local s = {}
local v = %q
moonws.shared.loads = (moonws.shared.loads or 0) + 1
function s.onOpen(caller)
  caller:send("open " .. v)
end
function s.onText(caller, text)
  if text == "version" then caller:send(v)
  elseif text == "path" then caller:send(v .. ":" .. caller.path)
  elseif text == "inc" then
    caller.data.n = (caller.data.n or 0) + 1
    caller:send(v .. " n=" .. caller.data.n .. " loads=" .. moonws.shared.loads)
  else caller:send(v .. ":" .. text) end
end
%s
return s
]]):format(version, extra or "")
end

local function write(path, content)
  local f = assert(io.open(path, "w"))
  f:write(content)
  f:close()
end

-- Counts log lines matching a plain string.
local function count(srv, text)
  return srv:count_log(text)
end

-- Waits until text has appeared n times in the log.
local function wait_count(srv, text, n, timeout)
  local deadline = core.now() + (timeout or 5)
  while count(srv, text) < n do
    assert(core.now() < deadline, ("%q did not appear %d times; log:\n%s"):format(text, n, srv:log()))
    core.sleep(0.02)
  end
end

describe("hot reload", function()
  local dir, srv, file, reloads

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    file = dir .. "/svc.lua"
    write(file, service("v1"))
    srv = testing.start{ dir = dir }
    reloads = 0
  end)

  after_each(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)

  -- Saves with fn, then waits for the reload to be logged.
  local function save(fn, ...)
    fn(...)
    reloads = reloads + 1
    wait_count(srv, "reloaded svc.lua", reloads)
  end

  local function open()
    local c = assert(srv:connect("/svc"))
    assert.matches("^open v", (c:receive(2)))
    return c
  end

  local function version(c)
    c:send("version")
    return (c:receive(2))
  end

  local saves = {
    ["written in place"] = function(content) write(file, content) end,
    ["truncated, then written in two slow parts"] = function(content)
      local f = assert(io.open(file, "w"))
      f:write(content:sub(1, 40))
      f:flush()
      core.sleep(0.4)          -- longer than the quiet period: the writer is still at it
      f:write(content:sub(41))
      f:close()
    end,
    ["written to a temporary file renamed over it"] = function(content)
      write(file .. ".tmp", content)
      assert(os.rename(file .. ".tmp", file))
    end,
    ["deleted, then created again"] = function(content)
      assert(os.remove(file))
      core.sleep(0.02)
      write(file, content)
    end,
    ["saved the way vim does it (backup rename, 4913 probe, write, backup removed)"] = function(content)
      write(dir .. "/4913", "")
      os.remove(dir .. "/4913")
      assert(os.rename(file, file .. "~"))
      write(file, content)
      os.remove(file .. "~")
    end,
  }

  for name, fn in pairs(saves) do
    it("reloads a file " .. name .. ", keeping connections and caller.data", function()
      local c = open()
      c:send("inc")
      assert.equal("v1 n=1 loads=1", (c:receive(2)))
      save(fn, service("v2"))
      assert.equal("v2", version(c))
      c:send("inc")
      assert.equal("v2 n=2 loads=2", (c:receive(2)))
      assert.is_nil(srv:log():find("[error]", 1, true), srv:log())
      c:close()
    end)
  end

  it("logs how many connections were kept", function()
    local a, b = open(), open()
    save(write, file, service("v2"))
    assert(srv:wait_log("reloaded svc.lua at /svc (2 connections kept)", 2, true))
    a:close() b:close()
  end)

  it("keeps the old version on a syntax error, naming file and line", function()
    local c = open()
    write(file, "local s = {}\nfunction s.onText(c, t)\n  c:send(t\nend\nreturn s\n")
    assert(srv:wait_log("svc.lua:4: ')' expected", 3, true))
    assert(srv:wait_log("the old version keeps serving", 1, true))
    assert.equal("v1", version(c))
    local d = open()
    assert.equal("v1", version(d))
    c:close() d:close()
  end)

  it("keeps the old version when the new one breaks a rule", function()
    local c = open()
    write(file, service("v2", "function s.onMessage(caller, msg) end"))
    assert(srv:wait_log("svc.lua:15: onMessage cannot be combined with onText (the old version keeps serving)", 3, true))
    assert.equal("v1", version(c))
    c:close()
  end)

  it("keeps the old version when the new one fails while loading", function()
    local c = open()
    write(file, "local t = nil\nt.x = 1\nreturn {}\n")
    assert(srv:wait_log("svc.lua:2: attempt to index a nil value", 3, true))
    assert.equal("v1", version(c))
    c:close()
  end)

  it("serves a new version whose onOpen fails: old connections go on, new ones get 1011", function()
    local c = open()
    save(write, file, service("v2", "function s.onOpen(caller) error('new onOpen broke') end"))
    assert.equal("v2", version(c))
    local d = assert(srv:connect("/svc"))
    assert.equal(1011, (testing.until_close(d, 2)))
    assert(srv:wait_log("new onOpen broke", 2, true))
    assert.equal("v2", version(c))
    c:close()
  end)

  it("moves a service whose path changed, with its connections", function()
    local c = open()
    save(write, file, service("v2", 's.path = "/moved"'))
    assert.equal("v2", version(c))
    local m = assert(srv:connect("/moved"))
    assert.equal("open v2", (m:receive(2)))
    -- each connection keeps the path it asked for
    assert.equal("v2:/svc", (function() c:send("path") return c:receive(2) end)())
    assert.equal("v2:/moved", (function() m:send("path") return m:receive(2) end)())
    local _, _, status = srv:connect("/svc")
    assert.equal(404, status)
    c:close() m:close()
  end)

  it("unmounts a deleted file: its clients get 1001 \"service removed\"", function()
    local c = open()
    assert(os.remove(file))
    local code, reason = testing.until_close(c, 3)
    assert.equal(1001, code)
    assert.equal("service removed", reason)
    assert(srv:wait_log("removed svc.lua from /svc (1 connection closed)", 2, true))
    local _, _, status = srv:connect("/svc")
    assert.equal(404, status)
  end)

  it("mounts a new file, in a new folder too", function()
    write(dir .. "/fresh.lua", service("fresh"))
    assert(srv:wait_log("loaded fresh.lua at /fresh", 3, true))
    local c = assert(srv:connect("/fresh"))
    assert.equal("open fresh", (c:receive(2)))
    c:close()
    assert(os.execute("mkdir " .. dir .. "/api"))
    write(dir .. "/api/feed.lua", service("feed"))
    assert(srv:wait_log("loaded api/feed.lua at /api/feed", 3, true))
    c = assert(srv:connect("/api/feed"))
    assert.equal("open feed", (c:receive(2)))
    assert(os.execute("rm -rf " .. dir .. "/api"))
    assert.equal(1001, (testing.until_close(c, 3)))
  end)

  it("keeps connections and caller.data through ten reloads in a row", function()
    local c = open()
    for i = 2, 11 do
      save(write, file, service("v" .. i))
      c:send("inc")
      assert.equal(("v%d n=%d loads=%d"):format(i, i - 1, i), (c:receive(2)))
    end
    c:close()
  end)

  it("cancels the old version's timers", function()
    write(file, service("v1", 'moonws.every(0.02, function() moonws.broadcast("/svc", "tick v1") end)'))
    wait_count(srv, "reloaded svc.lua", 1)
    local c = open()
    assert.equal("tick v1", (c:receive(2)))
    write(file, service("v2", 'moonws.every(0.02, function() moonws.broadcast("/svc", "tick v2") end)'))
    wait_count(srv, "reloaded svc.lua", 2)
    local seen_v2 = 0
    while seen_v2 < 5 do
      local msg = assert(c:receive(2))
      if msg == "tick v2" then
        seen_v2 = seen_v2 + 1
      else
        assert.equal(0, seen_v2, "a v1 tick after a v2 one: " .. msg)
      end
    end
    c:close()
  end)

  it("loses no message when it reloads during a burst of traffic", function()
    local c = open()
    local n = 3000
    for i = 1, n do
      assert(c:send("m" .. i))
      if i == 1000 then write(file, service("v2")) end
      if i == 2000 then wait_count(srv, "reloaded svc.lua", 1) end
    end
    local switched = false
    for i = 1, n do
      local reply = assert(c:receive(5))
      local v, k = reply:match("^(v%d):m(%d+)$")
      assert.equal(i, tonumber(k))
      if v == "v2" then switched = true else assert.is_false(switched) end
    end
    assert.is_true(switched)
    c:close()
  end)
end)

describe("reloading by signal", function()
  it("ignores edits with --no-reload, and reloads everything on SIGHUP", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    write(dir .. "/svc.lua", service("v1"))
    write(dir .. "/gone.lua", service("gone"))
    local srv = testing.start{ dir = dir, args = { "--no-reload" } }
    local c = assert(srv:connect("/svc"))
    assert.equal("open v1", (c:receive(2)))
    local g = assert(srv:connect("/gone"))
    assert.equal("open gone", (g:receive(2)))
    write(dir .. "/svc.lua", service("v2"))
    os.remove(dir .. "/gone.lua")
    write(dir .. "/new.lua", service("new"))
    -- nothing watches: for half a second the old version answers
    local deadline = core.now() + 0.5
    while core.now() < deadline do
      c:send("version")
      assert.equal("v1", (c:receive(2)))
    end
    srv:signal("HUP")
    assert(srv:wait_log("reloaded svc.lua", 3, true))
    assert(srv:wait_log("loaded new.lua at /new", 3, true))
    assert.equal(1001, (testing.until_close(g, 3)))
    c:send("version")
    assert.equal("v2", (c:receive(2)))
    c:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)
end)

-- Helpers for the specs below.
local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  return dir
end

describe("reload log lines", function()
  it("count connections in the singular too", function()
    local dir = tmpdir()
    write(dir .. "/svc.lua", service("v1"))
    local srv = testing.start{ dir = dir }
    local c = assert(srv:connect("/svc"))
    assert.equal("open v1", (c:receive(2)))
    write(dir .. "/svc.lua", service("v2"))
    assert(srv:wait_log("reloaded svc.lua at /svc (1 connection kept)", 3, true))
    assert(os.remove(dir .. "/svc.lua"))
    assert(srv:wait_log("removed svc.lua from /svc (1 connection closed)", 3, true))
    write(dir .. "/svc.lua", service("v3"))
    -- "loaded", not "reloaded" (a worker's line would carry its number)
    assert(srv:wait_log("%[info%] [%[%]w%d ]*loaded svc%.lua at /svc", 3))
    write(dir .. "/svc.lua", service("v4"))
    assert(srv:wait_log("reloaded svc.lua at /svc (0 connections kept)", 3, true))
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)
end)

-- A service at an explicit path (set on line 2, for the error messages);
-- caller.data and moonws.shared keep counters, as in service() above.
local function pathed(tag, path, extra)
  return ([[
local s = {}
s.path = %q
moonws.shared.loads = (moonws.shared.loads or 0) + 1
function s.onOpen(caller) caller:send("open " .. %q) end
function s.onText(caller, text)
  if text == "inc" then
    caller.data.n = (caller.data.n or 0) + 1
    caller:send(%q .. " n=" .. caller.data.n .. " loads=" .. moonws.shared.loads)
  else caller:send(%q .. ":" .. text) end
end
%s
return s
]]):format(path, tag, tag, tag, extra or "")
end

-- Opens a client on path and counts once in its caller.data: the reply
-- is "TAG n=1 loads=L".
local function open_inc(srv, path, tag)
  local c = assert(srv:connect(path))
  assert.equal("open " .. tag, (c:receive(2)))
  c:send("inc")
  return c, (c:receive(2))
end

local function inc(c)
  c:send("inc")
  return (c:receive(2))
end


describe("a path conflict", function()
  it("names the file, the line of its path and the file that serves it", function()
    local dir = tmpdir()
    write(dir .. "/a.lua", pathed("a1", "/x"))
    local srv = testing.start{ dir = dir }
    local a = open_inc(srv, "/x", "a1")
    write(dir .. "/b.lua", pathed("b1", "/x"))
    assert(srv:wait_log("b.lua:2: path /x is already served by a.lua (not loaded)", 3, true))
    -- a path from the file name is on line 1
    write(dir .. "/x.lua", "return {}\n")
    assert(srv:wait_log("x.lua:1: path /x is already served by a.lua (not loaded)", 3, true))
    write(dir .. "/b.lua", pathed("b2", "/b"))
    assert(srv:wait_log("%[info%] [%[%]w%d ]*loaded b%.lua at /b", 3))
    write(dir .. "/b.lua", pathed("b3", "/x"))
    assert(srv:wait_log("b.lua:2: path /x is already served by a.lua (the old version keeps serving)", 3, true))
    assert.equal("a1 n=2 loads=1", inc(a))
    a:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)
end)
describe("changes that belong together", function()
  local dir, srv

  local function start(args)
    srv = testing.start{ dir = dir, args = args }
  end

  before_each(function() dir = tmpdir() end)

  after_each(function()
    if srv then
      assert.equal(0, srv:stop())
      srv:cleanup()
      srv = nil
    end
    os.execute("rm -rf " .. dir)
  end)

  local function no_errors()
    assert.is_nil(srv:log():find("[error]", 1, true), srv:log())
  end

  it("swaps the paths of two services saved together, each keeping its clients", function()
    write(dir .. "/a.lua", pathed("a1", "/x"))
    write(dir .. "/b.lua", pathed("b1", "/y"))
    start()
    local a, ra = open_inc(srv, "/x", "a1")
    local b, rb = open_inc(srv, "/y", "b1")
    assert.equal("a1 n=1 loads=1", ra)
    assert.equal("b1 n=1 loads=1", rb)
    write(dir .. "/a.lua", pathed("a2", "/y"))
    write(dir .. "/b.lua", pathed("b2", "/x"))
    assert(srv:wait_log("reloaded a.lua at /y (1 connection kept)", 3, true))
    assert(srv:wait_log("reloaded b.lua at /x (1 connection kept)", 3, true))
    assert.equal("a2 n=2 loads=2", inc(a))
    assert.equal("b2 n=2 loads=2", inc(b))
    local x = assert(srv:connect("/x"))
    assert.equal("open b2", (x:receive(2)))
    local y = assert(srv:connect("/y"))
    assert.equal("open a2", (y:receive(2)))
    no_errors()
    a:close() b:close() x:close() y:close()
  end)

  it("swaps the paths of two services on SIGHUP", function()
    write(dir .. "/a.lua", pathed("a1", "/x"))
    write(dir .. "/b.lua", pathed("b1", "/y"))
    start{ "--no-reload" }
    local a = open_inc(srv, "/x", "a1")
    local b = open_inc(srv, "/y", "b1")
    write(dir .. "/a.lua", pathed("a2", "/y"))
    write(dir .. "/b.lua", pathed("b2", "/x"))
    srv:signal("HUP")
    assert(srv:wait_log("reloaded a.lua at /y", 3, true))
    assert(srv:wait_log("reloaded b.lua at /x", 3, true))
    assert.equal("a2 n=2 loads=2", inc(a))
    assert.equal("b2 n=2 loads=2", inc(b))
    no_errors()
    a:close() b:close()
  end)

  it("refuses only the files of a conflict, naming file, line and the other file", function()
    write(dir .. "/a.lua", pathed("a1", "/x"))
    start()
    local a = open_inc(srv, "/x", "a1")
    -- one batch: b.lua wants a served path, d.lua and e.lua want one path,
    -- c.lua is fine
    write(dir .. "/b.lua", pathed("b1", "/x"))
    write(dir .. "/c.lua", pathed("c1", "/c"))
    write(dir .. "/d.lua", pathed("d1", "/z"))
    write(dir .. "/e.lua", "return { path = '/z' }\n")
    assert(srv:wait_log("b.lua:2: path /x is already served by a.lua (not loaded)", 3, true))
    assert(srv:wait_log("d.lua:2: path /z is also claimed by e.lua (not loaded)", 3, true))
    assert(srv:wait_log("e.lua:1: path /z is also claimed by d.lua (not loaded)", 3, true))
    assert(srv:wait_log("loaded c.lua at /c", 3, true))
    assert.equal("a1 n=2 loads=1", inc(a))
    local _, _, status = srv:connect("/z")
    assert.equal(404, status)
    -- the path from the file name: line 1
    write(dir .. "/x.lua", "return {}\n")
    assert(srv:wait_log("x.lua:1: path /x is already served by a.lua (not loaded)", 3, true))
    a:close()
  end)

  it("moves a renamed file with the same path: clients, caller.data and moonws.shared stay", function()
    write(dir .. "/a.lua", pathed("a1", "/x"))
    start()
    local c, r = open_inc(srv, "/x", "a1")
    assert.equal("a1 n=1 loads=1", r)
    local d = open_inc(srv, "/x", "a1")
    assert(os.rename(dir .. "/a.lua", dir .. "/c.lua"))
    assert(srv:wait_log("moved a.lua to c.lua at /x (2 connections kept)", 3, true))
    assert.equal("a1 n=2 loads=2", inc(c))
    assert.equal("a1 n=2 loads=2", inc(d))
    -- it is c.lua's now: editing it reloads, and the count goes on
    write(dir .. "/c.lua", pathed("c2", "/x"))
    assert(srv:wait_log("reloaded c.lua at /x (2 connections kept)", 3, true))
    assert.equal("c2 n=3 loads=3", inc(c))
    assert.equal(0, count(srv, "service removed"))
    no_errors()
    c:close() d:close()
  end)

  it("moves a file into a subfolder when it sets its path", function()
    write(dir .. "/b.lua", pathed("b1", "/b"))
    start()
    local c = open_inc(srv, "/b", "b1")
    assert(os.execute("mkdir " .. dir .. "/sub"))
    assert(os.rename(dir .. "/b.lua", dir .. "/sub/b.lua"))
    assert(srv:wait_log("moved b.lua to sub/b.lua at /b (1 connection kept)", 3, true))
    assert.equal("b1 n=2 loads=2", inc(c))
    write(dir .. "/sub/b.lua", pathed("b2", "/b"))
    assert(srv:wait_log("reloaded sub/b.lua at /b (1 connection kept)", 3, true))
    assert.equal("b2 n=3 loads=3", inc(c))
    no_errors()
    c:close()
  end)

  it("moves the services of a renamed folder that set their paths", function()
    assert(os.execute("mkdir " .. dir .. "/grp"))
    write(dir .. "/grp/one.lua", pathed("one", "/g"))
    write(dir .. "/grp/two.lua", pathed("two", "/h"))
    start()
    local g = open_inc(srv, "/g", "one")
    local h = open_inc(srv, "/h", "two")
    assert(os.rename(dir .. "/grp", dir .. "/grp2"))
    assert(srv:wait_log("moved grp/one.lua to grp2/one.lua at /g (1 connection kept)", 3, true))
    assert(srv:wait_log("moved grp/two.lua to grp2/two.lua at /h (1 connection kept)", 3, true))
    assert.equal("one n=2 loads=2", inc(g))
    assert.equal("two n=2 loads=2", inc(h))
    local h2 = assert(srv:connect("/h"))
    assert.equal("open two", (h2:receive(2)))
    -- the folder is watched under its new name
    write(dir .. "/grp2/two.lua", pathed("two2", "/h"))
    assert(srv:wait_log("reloaded grp2/two.lua at /h (2 connections kept)", 3, true))
    assert.equal("two2 n=3 loads=3", inc(h))
    no_errors()
    g:close() h:close() h2:close()
  end)

  it("treats a rename that changes the path as a removal and a new service", function()
    write(dir .. "/a.lua", service("a1"))
    start()
    local c = assert(srv:connect("/a"))
    assert.equal("open a1", (c:receive(2)))
    assert(os.rename(dir .. "/a.lua", dir .. "/c.lua"))
    assert.equal(1001, (testing.until_close(c, 3)))
    assert(srv:wait_log("removed a.lua from /a (1 connection closed)", 3, true))
    assert(srv:wait_log("loaded c.lua at /c", 3, true))
  end)
end)

describe("a version that is refused", function()
  local dir, srv, c

  before_each(function()
    dir = tmpdir()
    write(dir .. "/svc.lua", service("v1"))
    -- One worker: moonws.after(0, fn) at a top level runs on every worker
    -- (timers are each worker's), and the spec counts what its client hears.
    srv = testing.start{ dir = dir, workers = 1 }
    c = assert(srv:connect("/svc"))
    assert.equal("open v1", (c:receive(2)))
    c:send("inc")
    assert.equal("v1 n=1 loads=1", (c:receive(2)))
  end)

  after_each(function()
    c:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)

  -- The next thing the client hears must be the answer to "version".
  local function hears_only(want)
    c:send("version")
    assert.equal(want, (c:receive(2)))
  end

  local top_level = {
    ["moonws.broadcast"] = 'moonws.broadcast("/svc", "from the top level")',
    ["moonws.broadcastBinary"] = 'moonws.broadcastBinary("/svc", "from the top level")',
    ["moonws.publish"] = 'moonws.publish("t", "from the top level")',
    ["caller:send"] = 'for cl in moonws.connections("/svc") do cl:send("from the top level") end',
    ["caller:close"] = 'for cl in moonws.connections("/svc") do cl:close(4000, "top level") end',
    ["caller:subscribe"] = 'for cl in moonws.connections("/svc") do cl:subscribe("t") end',
  }
  local n = 0
  for what, code in pairs(top_level) do
    it("is refused when its top level uses " .. what .. ", and no client hears of it", function()
      write(dir .. "/svc.lua", service("v2", code))
      assert(srv:wait_log(("svc.lua:15: %s cannot be used while the file loads"):format(what), 3, true))
      assert(srv:wait_log("in a handler or in moonws.after(0, fn)) (the old version keeps serving)", 3, true))
      hears_only("v1")
      n = n + 1
    end)
  end

  it("may send from moonws.after(0, fn): that runs once the version serves", function()
    write(dir .. "/svc.lua", service("v2", 'moonws.after(0, function() moonws.broadcast("/svc", "hello from v2") end)'))
    assert.equal("hello from v2", (c:receive(3)))
    hears_only("v2")
  end)

  it("leaves moonws.shared's own fields as they were", function()
    -- three refused saves, each counting a load at its top level
    for i = 1, 3 do
      write(dir .. "/svc.lua", service("bad" .. i, "error('broken " .. i .. "')"))
      assert(srv:wait_log("broken " .. i, 3, true))
    end
    write(dir .. "/svc.lua", service("v2", "moonws.shared.added = true"))
    assert(srv:wait_log("reloaded svc.lua", 3, true))
    assert.equal("v2 n=2 loads=2", inc(c))
    -- a refused version's new field goes too, a replaced one comes back
    write(dir .. "/svc.lua", service("bad", "moonws.shared.added = nil; moonws.shared.extra = 1; error('x')"))
    assert(srv:wait_log("svc.lua:15: x", 3, true))
    write(dir .. "/svc.lua", service("v3", [[
function s.onBinary(caller) caller:send(tostring(moonws.shared.added) .. " " .. tostring(moonws.shared.extra)) end]]))
    wait_count(srv, "reloaded svc.lua", 2)
    c:sendBinary("?")
    assert.equal("true nil", (c:receive(2)))
  end)

  it("keeps what it changed inside a table kept in moonws.shared (documented)", function()
    write(dir .. "/svc.lua", service("v2", [[
local seen = moonws.shared.seen or {}
moonws.shared.seen = seen
function s.onBinary(caller) caller:send(table.concat(seen, ",")) end]]))
    assert(srv:wait_log("reloaded svc.lua", 3, true))
    write(dir .. "/svc.lua", service("bad", "table.insert(moonws.shared.seen, 'refused'); error('x')"))
    assert(srv:wait_log("svc.lua:15: x", 3, true))
    c:sendBinary("?")
    assert.equal("refused", (c:receive(2)))
  end)
end)

describe("a file its writer still has open", function()
  local dir, srv

  before_each(function()
    dir = tmpdir()
    write(dir .. "/svc.lua", service("v1"))
    srv = testing.start{ dir = dir }
  end)

  after_each(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir)
  end)

  it("is not loaded when it was created and not yet written", function()
    local f = assert(io.open(dir .. "/fresh.lua", "w"))
    core.sleep(0.5)            -- the writer takes its time before the first byte
    f:write(service("fresh"))
    f:close()
    assert(srv:wait_log("loaded fresh.lua at /fresh", 3, true))
    assert.equal(0, count(srv, "fresh.lua:1:"))
    local c = assert(srv:connect("/fresh"))
    assert.equal("open fresh", (c:receive(2)))
    c:close()
  end)

  it("is loaded as it is after 3 s, with a warning, and again when closed", function()
    local c = assert(srv:connect("/svc"))
    assert.equal("open v1", (c:receive(2)))
    local content = service("v2")
    local f = assert(io.open(dir .. "/svc.lua", "w"))
    f:write(content:sub(1, 40))
    f:flush()
    assert(srv:wait_log("svc.lua: still being written after 3 s; loading it as it is", 5, true))
    assert(srv:wait_log("(the old version keeps serving)", 3, true))
    f:write(content:sub(41))
    f:close()
    assert(srv:wait_log("reloaded svc.lua", 3, true))
    c:send("version")
    assert.equal("v2", (c:receive(2)))
    c:close()
  end)
end)

describe("a folder moved out of the services folder", function()
  it("is no longer watched", function()
    local dir, out = tmpdir(), tmpdir()
    assert(os.execute("mkdir " .. dir .. "/grp"))
    write(dir .. "/grp/x.lua", service("x1"))
    local srv = testing.start{ dir = dir }
    assert(os.execute(("mv %s/grp %s/grp"):format(dir, out)))
    assert(srv:wait_log("removed grp/x.lua from /grp/x", 3, true))
    -- a new grp/x.lua; edits in the old folder must not reach it
    assert(os.execute("mkdir " .. dir .. "/grp"))
    write(dir .. "/grp/x.lua", service("x2"))
    assert(srv:wait_log("loaded grp/x.lua at /grp/x", 3, true))
    write(out .. "/grp/x.lua", service("x3"))
    write(out .. "/grp/y.lua", service("y"))
    write(dir .. "/marker.lua", service("m"))
    assert(srv:wait_log("loaded marker.lua at /marker", 3, true))
    assert.equal(0, count(srv, "reloaded grp/x.lua"))
    assert.equal(0, count(srv, "grp/y.lua"))
    assert.equal(0, srv:stop())
    srv:cleanup()
    os.execute("rm -rf " .. dir .. " " .. out)
  end)
end)
