-- The Lua sandbox under attack (issue 10): the CPU budget, text-only
-- loading, what a service can reach, the memory cap, and the one thing the
-- budget cannot stop (a single long C call). Every attack must end the
-- attacker's call or connection only: a bystander echoes through /echo all
-- along, and the server still stops with exit 0 afterwards.
--
-- With MOONWS_ATTACK_LOG=FILE each attack appends the bystander's echo
-- latency during it to FILE.
local testing = require "moonws.testing"
local cjson = require "cjson"

local MiB = 1024 * 1024
-- The server's peak RSS with --lua-memory 64M, whatever the attack: the
-- cap, plus what the server holds besides. That is about 8 MiB, but the
-- AddressSanitizer build holds much more: its shadow memory, and the
-- quarantine where freed blocks wait (up to 256 MiB). Without the cap the
-- table grows to 512 MiB.
local RSS_BOUND = 256 * MiB

describe("the Lua sandbox", function()
  local srv
  lazy_setup(function()
    srv = testing.start{ dir = "spec/services/sandbox", log_level = "info",
                         args = { "--lua-memory", "64M" } }
  end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  -- Runs fn while a bystander echoes through /echo; checks it lost
  -- nothing and is still served after; returns its figures.
  local function attack(label, fn)
    local b = testing.bystander(srv, "/echo")
    fn()
    assert.is_true(b:wait(3, 10))
    local st = b:stop(label)
    assert.equal(0, st.failures, table.concat(st.reasons, "; "))
    return st
  end

  -- Sends an attack on a connection of its own: the close code that ended
  -- it (nil, why when none came).
  local function run(cmd, timeout)
    local c = assert(srv:connect("/attack"))
    c:send(cmd)
    return testing.until_close(c, timeout or 10)
  end

  -- Sends a command and returns its answer.
  local function ask(cmd, path)
    local c = assert(srv:connect(path or "/attack"))
    c:send(cmd)
    local data = c:receive(10)
    c:close()
    return data
  end

  -- Checks the server's peak RSS against the bound, and notes it with the
  -- bystander's figures.
  local function check_rss(label)
    local _, peak = srv:rss()
    local log = os.getenv("MOONWS_ATTACK_LOG")
    if log then
      local f = assert(io.open(log, "a"))
      f:write(("%s: peak RSS %.0f MiB (bound %.0f MiB)\n"):format(label, peak / MiB, RSS_BOUND / MiB))
      f:close()
    end
    assert.is_true(peak < RSS_BOUND, ("peak RSS %.0f MiB"):format(peak / MiB))
  end

  -- What onError of /attack heard last.
  local function last_error()
    return (select(2, srv:http("GET", "/attack/last")))
  end

  describe("the CPU budget", function()
    for _, how in ipairs({ "co_loaded_resume", "co_loaded_wrap", "co_require", "co_close" }) do
      it("stops a loop in a coroutine however it was obtained: " .. how, function()
        attack("budget: " .. how, function()
          assert.equal(1011, (run(how)))
          assert.matches("exceeded its CPU budget", last_error())
        end)
      end)
    end

    it("cannot lose its hook: services have no debug.sethook", function()
      for _, how in ipairs({ "sethook", "sethook_loaded" }) do
        attack("budget: " .. how, function()
          assert.equal(1011, (run(how)))
          assert.matches("attempt to call a nil value %(field 'sethook'%)", last_error())
        end)
      end
    end)
  end)

  it("loads text only: patched bytecode is refused, never run", function()
    attack("load of patched bytecode", function()
      assert.equal("attempt to load a binary chunk (mode is 't') | " ..
                   "binary chunks are not available to services | " ..
                   "attempt to load a binary chunk (mode is 't')", ask("bytecode"))
    end)
  end)

  describe("the environment", function()
    it("holds only what is safe, and every alias leads to the same tables", function()
      assert.same({
        os = "clock date difftime exit getenv time",
        debug = "traceback",
        package = "config loaded preload",
        loaded = "_G coroutine debug math moonws os package string table utf8",
        io = "nil", dofile = "nil", loadfile = "nil", warn = "nil",
        string_mt = "false",
        same = true,
      }, cjson.decode(ask("visible")))
    end)

    local refused = {
      exit = "os.exit is not available to services",
      exit_globals = "os.exit is not available to services",
      open = "attempt to index a nil value %(global 'io'%)",
      popen = "attempt to index a nil value %(field 'io'%)",
      loadlib = "attempt to call a nil value %(field 'loadlib'%)",
      string_mt = "attempt to call a nil value %(field 'getmetatable'%)",
      setlocale = "attempt to call a nil value %(field 'setlocale'%)",
    }
    for _, how in ipairs({ "exit", "exit_globals", "open", "popen", "loadlib", "string_mt",
                           "setlocale" }) do
      it("refuses " .. how, function()
        attack("sandbox: " .. how, function()
          assert.equal(1011, (run(how)))
          assert.matches(refused[how], last_error())
        end)
      end)
    end

    it("reads a service's table raw: its metatable runs nowhere outside a handler", function()
      attack("a service table with a trap metatable", function()
        local c = assert(srv:connect("/trap"))
        c:send('{"event": "x"}')
        assert.equal("plain x", (c:receive(5)))
        c:close()
      end)
    end)

    it("requires Lua modules into the service's own sandbox, refuses C modules", function()
      for _ = 1, 2 do           -- the second time from the cache
        local r = cjson.decode(ask("require"))
        assert.equal("hello from attack", r[1])
        assert.same({ 1, 1, true, true, "nil" }, { r[2], r[3], r[4], r[5], r[6] })  -- once, cached
        assert.matches("'cjson' is a C module %(/.*cjson%.so%): services load Lua modules only", r[7])
        assert.matches("'io' is not available to services", r[8])
        assert.matches("module 'no.such.module' not found", r[9], 1, true)
        assert.matches("'../etc/passwd' is not a module name", r[10], 1, true)
        -- another service has its own copy, run in its own environment
        assert.equal("hello from other 1 1", select(2, srv:http("GET", "/other/mod")))
      end
    end)

    it("refuses collectgarbage options that would change the collector for everyone", function()
      attack("collectgarbage('stop')", function()
        assert.equal("stop=false restart=false incremental=false generational=false " ..
                     "setpause=false setstepmul=false collect=true count=true step=true " ..
                     "isrunning=true", ask("gc_options"))
        assert.equal(1011, (run("gc_stop")))
        assert.matches("collectgarbage%('stop'%) is not available to services", last_error())
      end)
    end)

    it("turns io, os.execute & co and C modules on for a service with sandbox = false", function()
      attack("sandbox = false", function()
        assert.equal("written function function function function function true nil",
                     ask("io", "/unsafe"))
        assert.equal("[1,2]", ask("cmodule", "/unsafe"))
        -- and nothing that would break the server
        assert.equal("false nil nil nil false attempt to load a binary chunk (mode is 't')",
                     ask("still", "/unsafe"))
      end)
    end)
  end)

  describe("the memory cap (--lua-memory 64M)", function()
    it("ends a handler whose global table grows without end with 1011", function()
      attack("memory: a global table grows", function()
        assert.equal(1011, (run("grow", 30)))
        assert.matches("not enough memory", last_error())
        assert.equal("hello", ask("hello"))     -- the next connection to the service
      end)
      assert(srv:wait_log("Lua memory of this worker is full (64 MiB, --lua-memory)", 2, true))
      check_rss("memory: a global table grows")
    end)

    it("fails string.rep of 1 GiB at once with not enough memory", function()
      attack("memory: string.rep of 1 GiB", function()
        assert.equal("false not enough memory", ask("rep"))
        assert.equal(1011, (run("rep_raw")))
        assert.matches("not enough memory", last_error())
      end)
      check_rss("memory: string.rep of 1 GiB")
    end)
  end)

  it("says when one C call holds the worker past its budget, and ends it after", function()
    -- What remains: the budget acts between instructions, and a backtracking
    -- string.find is one instruction. The bystander waits (its echoes fail
    -- after 5 s); the figures are logged, not asserted.
    local b = testing.bystander(srv, "/echo")
    local c = assert(srv:connect("/attack"))
    c:send("backtrack")
    assert(srv:wait_log("the handler of attack.lua is stuck inside a C function", 60, true))
    assert.equal(1011, (testing.until_close(c, 120)))
    assert.matches("exceeded its CPU budget", last_error())
    assert.is_true(b:wait(3, 20))
    b:stop("one C call: backtracking string.find (not contained)")
  end)
end)

describe("--unsafe-lua", function()
  it("turns the unsafe part on for every service, and nothing more", function()
    local srv = testing.start{ dir = "spec/services/sandbox", log_level = "info",
                               args = { "--unsafe-lua" } }
    local c = assert(srv:connect("/attack"))
    c:send("visible")
    local v = cjson.decode((c:receive(5)))
    assert.equal("clock date difftime execute exit getenv remove rename time tmpname", v.os)
    assert.same({ "table", "function", "function", "traceback", "false" },
                { v.io, v.dofile, v.loadfile, v.debug, v.string_mt })
    c:send("exit")
    assert.equal(1011, (testing.until_close(c, 5)))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)
