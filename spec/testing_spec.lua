-- moonws.testing itself: the tools every spec relies on, and the promise that
-- a failing spec leaves no server and no file behind.
local testing = require "moonws.testing"
local cjson = require "cjson"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local function tmpdir()
  return (sh("mktemp -d"):gsub("%s+$", ""))
end

-- Whether a process is there (and not a zombie).
local function alive(pid)
  local stat = read(("/proc/%d/stat"):format(pid))
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

local top = (sh("pwd"):gsub("%s+$", ""))
local busted_bin = (sh("command -v busted"):gsub("%s+$", ""))

-- Runs one spec file in a child busted from the repository's top folder;
-- returns the names of its successes and of its failures and errors.
local function child_busted(text)
  local dir = tmpdir()
  local f = assert(io.open(dir .. "/cleanup_spec.lua", "w"))
  f:write(text)
  f:close()
  local report = sh(("lua5.4 %q -o json %q/cleanup_spec.lua 2>&1"):format(busted_bin, dir))
  os.execute("rm -rf " .. dir)
  local json = report:match("{.*}")
  assert(json, report)
  local r = cjson.decode(json)
  local ok, bad = {}, {}
  for _, t in ipairs(r.successes) do ok[#ok + 1] = t.name end
  for _, list in ipairs({ r.failures, r.errors }) do
    for _, t in ipairs(list) do bad[#bad + 1] = t.name end
  end
  table.sort(bad)
  return ok, bad
end

describe("moonws.testing", function()
  it("runs a bystander that echoes through the server until stopped", function()
    local srv = testing.start{ dir = "examples", log_level = "info" }
    local b = testing.bystander(srv, "/echo")
    assert.is_true(b:wait(5, 5))
    local st = b:stop()
    assert.is_true(st.n >= 6)
    assert.equal(0, st.failures)
    assert.is_true(st.p50 > 0 and st.max >= st.p50)
    local rss, peak = srv:rss()
    assert.is_true(rss > 0 and peak >= rss)
    assert.is_true(srv:fds() >= 3)
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("counts the bystander's failures when the server goes away", function()
    local srv = testing.start{ dir = "examples", log_level = "info" }
    local b = testing.bystander(srv, "/echo")
    assert.equal(0, srv:stop())
    srv:cleanup()
    assert.is_true(b:wait(1, 10, true))
    local st = b:stop()
    assert.is_true(st.failures >= 1)
  end)

  it("leaves no server, bystander or log file behind when a spec fails before srv:stop()", function()
    local record = os.tmpname()
    finally(function() os.remove(record) end)
    local ok, bad = child_busted(([[
      local testing = require "moonws.testing"
      local function note(what, pid, file)
        local f = assert(io.open(%q, "a"))
        f:write(what, " ", pid, " ", file or "-", "\n")
        f:close()
      end
      local function alive(pid)
        local f = io.open(("/proc/%%d/stat"):format(pid))
        if not f then return false end
        local st = f:read("a"):match("^%%d+ %%b() (%%a)")
        f:close()
        return st ~= "Z"
      end
      local now = {}
      describe("a spec that fails", function()
        it("1 with a server and a bystander it never stops", function()
          local srv = testing.start{ dir = "examples", log_level = "info" }
          local b = testing.bystander(srv, "/echo")
          note("server", srv.pid, srv.logfile)
          note("bystander", b.pid)
          assert.equal("this spec", "fails on purpose")
        end)
        it("2 with a to-be-closed server", function()
          local srv <close> = testing.start{ dir = "examples" }
          note("server", srv.pid, srv.logfile)
          now[#now + 1] = srv
          error("fails on purpose")
        end)
        it("3 with busted's finally", function()
          local srv = testing.start{ dir = "examples" }
          finally(function() srv:cleanup() end)
          note("server", srv.pid, srv.logfile)
          now[#now + 1] = srv
          assert.is_true(false)
        end)
        it("4 sees the servers of 2 and 3 gone at once", function()
          assert.equal(2, #now)
          for _, srv in ipairs(now) do
            assert.is_false(alive(srv.pid))
            assert.is_nil(io.open(srv.logfile))
          end
        end)
      end)
    ]]):format(record))
    assert.same({ "a spec that fails 4 sees the servers of 2 and 3 gone at once" }, ok)
    assert.same({ "a spec that fails 1 with a server and a bystander it never stops",
                  "a spec that fails 2 with a to-be-closed server",
                  "a spec that fails 3 with busted's finally" }, bad)
    local n = 0
    for what, pid, file in read(record):gmatch("(%a+) (%d+) (%S+)\n") do
      n = n + 1
      assert.is_false(alive(tonumber(pid)), what .. " " .. pid .. " is still running")
      if file ~= "-" then assert.is_nil(read(file), file .. " is still there") end
    end
    assert.equal(4, n)
  end)

  it("gives the server the variables of env, and removes those set to false", function()
    local srv = testing.start{ dir = "examples", env = { MOONWS_SPEC_GREETING = "hello there", PATH = false } }
    local environ = "\0" .. read(("/proc/%d/environ"):format(srv.pid))
    assert.truthy(environ:find("\0MOONWS_SPEC_GREETING=hello there\0", 1, true))
    assert.falsy(environ:find("\0PATH=", 1, true))
    assert.equal(0, srv:stop())
    srv:cleanup()
    assert.has_error(function() testing.start{ dir = "examples", env = { ["A=B"] = "x" } } end)
    assert.has_error(function() testing.start{ dir = "examples", env = { A = true } } end)
  end)

  it("finds the binary in opts.bin, $MOONWS_BIN, ./build/moonws, then on PATH", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    os.execute(("mkdir %s/bin %s/elsewhere && echo '#!/bin/sh' >%s/bin/moonws && chmod +x %s/bin/moonws"):format(dir, dir, dir, dir))
    local function find(cwd, env, arg)
      local setup = ("package.path=%q; package.cpath=%q"):format(
        top .. "/lua/?.lua", top .. "/build/lua/?.so")
      return (sh(("cd %s && env -u MOONWS_BIN %s lua5.4 -e %q 2>&1"):format(cwd, env, setup
        .. ("; local ok, r = pcall(require('moonws.testing').find_bin, %s); io.write(r)"):format(arg or "nil"))))
    end
    local path = ("PATH=%s/bin:/usr/bin:/bin"):format(dir)
    assert.equal("/opt/x/moonws", find(top, path, "'/opt/x/moonws'"))
    assert.equal("/opt/y/moonws", find(top, path .. " MOONWS_BIN=/opt/y/moonws"))
    assert.equal("build/moonws", find(top, path))
    assert.equal(dir .. "/bin/moonws", find(dir .. "/elsewhere", path))
    assert.matches("no moonws binary", find(dir .. "/elsewhere", "PATH=/usr/bin:/bin"), 1, true)
  end)
end)
