-- The command line (docs/reference.md, "Command line").
local testing = require "moonws.testing"
local client = require "moonws.client"

local bin = os.getenv("MOONWS_BIN") or "build/moonws"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

-- Runs moonws with args (behind a prefix command such as "timeout 5");
-- returns exit code, stdout, stderr.
local function run(args, prefix)
  local out, err = os.tmpname(), os.tmpname()
  local _, _, code = os.execute(("%s %s %s >%s 2>%s"):format(prefix or "", bin, args, out, err))
  return code, read(out), read(err)
end

describe("moonws command line", function()
  it("prints usage for -h and exits 0", function()
    local code, out = run("-h")
    assert.equal(0, code)
    assert.matches("usage: moonws", out, 1, true)
    assert.matches("--listen", out, 1, true)
    assert.matches("--workers N", out, 1, true)
    assert.matches("default: the number of CPUs", out, 1, true)
  end)

  it("prints the version for -v", function()
    local code, out = run("--version")
    assert.equal(0, code)
    assert.matches("^moonws %d+%.%d+%.%d+", out)
  end)

  it("refuses an unknown flag with usage on stderr and exit 2", function()
    local code, out, err = run("--frobnicate")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("unknown option '--frobnicate'", err, 1, true)
    assert.matches("usage: moonws", err, 1, true)
  end)

  it("refuses a flag without its value", function()
    local code, _, err = run("--listen")
    assert.equal(2, code)
    assert.matches("needs a value", err, 1, true)
  end)

  it("refuses a bad listen address, log level and worker count", function()
    assert.equal(2, (run("-l 127.0.0.1:99999 examples")))
    assert.equal(2, (run("--log-level loud examples")))
    assert.equal(2, (run("--log-format xml examples")))
    for _, n in ipairs({ "0", "65", "x", "2x", "-1", "" }) do
      local code, out, err = run(("-w '%s' examples"):format(n))
      assert.equal(2, code, "-w " .. n)
      assert.equal("", out)
      assert.matches("bad worker count", err, 1, true)
      assert.matches("usage: moonws", err, 1, true)
    end
  end)

  it("runs -w 2 and -w 64, one listening line per address", function()
    for _, n in ipairs({ 2, 64 }) do
      local srv <close> = testing.start{ workers = n, args = { "-l", "127.0.0.1:0" }, listeners = 2 }
      assert.equal(2, #srv.urls)
      assert.not_equal(srv.urls[1], srv.urls[2])
      for _, url in ipairs(srv.urls) do
        local c = assert(client.connect(url .. "/echo"))
        c:send("hi")
        assert.equal("hi", (c:receive(2)))
        c:close()
      end
      assert.equal(0, srv:stop())
    end
  end)

  it("refuses bad values of the limits' flags with usage and exit 2", function()
    local bad = {
      { "--max-connections", "x" }, { "--max-connections", "-1" }, { "--max-connections", "" },
      { "--max-connections", "12abc" }, { "--max-connections", "99999999999" },
      { "--max-connections-per-ip", "many" }, { "--max-connections-per-ip", "-3" },
      { "--max-connections-per-ip", "1.5" },
      { "--max-buffered", "12Q" }, { "--max-buffered", "-1" }, { "--max-buffered", "M" },
      { "--max-buffered", "1MB" }, { "--max-buffered", "99999999999G" },
      { "--max-buffered", "12 " }, { "--max-buffered", "1T" },
      { "--keepalive-timeout", "0" }, { "--keepalive-timeout", "-2" },
      { "--keepalive-timeout", "soon" }, { "--keepalive-timeout", "1e9" },
    }
    for _, b in ipairs(bad) do
      local code, out, err = run(("%s '%s' examples"):format(b[1], b[2]))
      assert.equal(2, code, b[1] .. " " .. b[2])
      assert.equal("", out)
      assert.matches("bad " .. b[1]:gsub("%-", "%%-") .. " '", err)
      assert.matches("usage: moonws", err, 1, true)
    end
  end)

  it("takes good values of the limits' flags", function()
    local srv = testing.start{ dir = "examples", args = { "--max-connections", "100",
      "--max-connections-per-ip", "0", "--max-buffered", "64k", "--keepalive-timeout", "2.5" } }
    local c = assert(client.connect(srv.url .. "/echo"))
    c:send("hi")
    assert.equal("hi", (c:receive(2)))
    c:close()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("refuses a bad --lua-memory with usage and exit 2", function()
    for _, bad in ipairs({ "12X", "0", "1023K", "-5M", "M", "1.5G", "64MB", "99999999999999999999G" }) do
      local code, out, err = run("--lua-memory " .. bad .. " --check examples")
      assert.equal(2, code, bad)
      assert.equal("", out)
      assert.matches("bad --lua-memory '" .. bad .. "' (a size of at least 1M, like 64M or 2G)", err,
                     1, true)
      assert.matches("usage: moonws", err, 1, true)
    end
    for _, good in ipairs({ "1M", "1024k", "2g", "67108864" }) do
      assert.equal(0, (run("--lua-memory " .. good .. " --check examples")), good)
    end
    local _, out = run("-h")
    assert.matches("--lua-memory SIZE", out, 1, true)
    assert.matches("--unsafe-lua", out, 1, true)
  end)

  it("checks a good folder with --check and exits 0", function()
    local code, out = run("--check examples")
    assert.equal(0, code)
    assert.matches("ok echo.lua -> /echo", out, 1, true)
    assert.matches("ok chat.lua -> /chat", out, 1, true)
  end)

  it("lists every error of a broken folder with --check and exits 1", function()
    local code, out, err = run("--check spec/services/broken")
    assert.equal(1, code)
    assert.matches("ok good.lua -> /good", out, 1, true)
    assert.matches("both.lua:5: onMessage cannot be combined with onText", err, 1, true)
    assert.matches("unknown.lua:3: unknown handler onFoo", err, 1, true)
    assert.matches("syntax.lua:4: ')' expected", err, 1, true)
    assert.matches("notable.lua:1: a service file must return a table (got number)", err, 1, true)
    assert.matches("misspelled.lua:4: unknown handler onmessage (did you mean onMessage?)", err, 1, true)
    assert.matches("spin_at_load.lua:1: handler exceeded its CPU budget", err, 1, true)
    assert.matches("badopt.lua:3: `idle_timeout` must be a number", err, 1, true)
    assert.matches("badflag.lua:5: compression option `context_takeover` must be true or false", err, 1, true)
    assert.matches("runtime_error.lua:3: attempt to index a nil value", err, 1, true)
    assert.matches("claim_b.lua:2: path /claimed is already served by claim_a.lua", err, 1, true)
    assert.matches("badroute.lua:3: bad route \"FETCH /x\"", err, 1, true)
    assert.matches("badsandbox.lua:3: `sandbox` must be true or false", err, 1, true)
  end)

  it("prints one listening line per listener", function()
    local srv = testing.start{ dir = "examples", args = { "-l", "127.0.0.1:0" }, listeners = 2 }
    assert.equal(2, #srv.urls)
    for _, url in ipairs(srv.urls) do
      assert.matches("^ws://127%.0%.0%.1:%d+$", url)
      local c = assert(client.connect(url .. "/echo"))
      c:send("hi")
      assert.equal("hi", (c:receive(2)))
      c:close()
    end
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("refuses a port another server holds, with exit 1", function()
    local srv = testing.start{ dir = "examples" }
    local code, _, err = run(("-l 127.0.0.1:%d examples"):format(srv.port), "timeout 5")
    assert.equal(1, code)
    assert.matches("cannot listen on 127.0.0.1:" .. srv.port .. ": Address already in use", err, 1, true)
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("refuses a bad address before loading any service", function()
    local code, _, err = run("-l 127.0.0.1:99999 spec/services/broken")
    assert.equal(2, code)
    assert.is_nil(err:find("not loaded", 1, true))
  end)

  it("logs JSON lines with --log-format json", function()
    local srv = testing.start{ dir = "examples", args = { "--log-format", "json" } }
    assert.equal(0, srv:stop())
    local n = 0
    local workers = 0
    for line in srv:log():gmatch("[^\n]+") do
      -- a worker's lines say which one it is
      local w = line:match('^{"ts":"[^"]+","level":"%a+","worker":(%d+),"msg":".*"}$')
      if w then
        workers = workers + 1
      else
        assert.matches('^{"ts":"[^"]+","level":"%a+","msg":".*"}$', line)
      end
      n = n + 1
    end
    assert.is_true(n > 0)
    assert.is_true(workers > 0)
    srv:cleanup()
  end)

  -- "timeout 5": the server these refuse would otherwise serve until killed.
  it("refuses a services folder that does not exist, naming it, with exit 2", function()
    local code, out, err = run("-l 127.0.0.1:0 no/such/folder", "timeout 5")
    assert.equal(2, code)
    assert.equal("", out)                               -- it never listened
    assert.equal("moonws: services folder no/such/folder: No such file or directory\n", err)
    code, _, err = run("--check no/such/folder", "timeout 5")
    assert.equal(2, code)
    assert.matches("services folder no/such/folder: No such file or directory", err, 1, true)
  end)

  it("refuses a services folder that is a file, with exit 2", function()
    local code, out, err = run("-l 127.0.0.1:0 Makefile", "timeout 5")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("moonws: services folder Makefile: not a folder\n", err)
  end)

  it("refuses a --static folder that does not exist or is a file, with exit 2", function()
    local code, out, err = run("-l 127.0.0.1:0 --static no/such/public examples", "timeout 5")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("moonws: --static no/such/public: No such file or directory\n", err)
    code, out, err = run("-l 127.0.0.1:0 --static Makefile examples", "timeout 5")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("moonws: --static Makefile: not a folder\n", err)
  end)
end)
