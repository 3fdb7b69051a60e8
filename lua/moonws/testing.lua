-- moonws.testing: start a live moonws for a spec (docs/reference.md,
-- "moonws.testing").
--
--   local testing = require "moonws.testing"
--   local srv <close> = testing.start{ dir = "services" }
--   local c = assert(srv:connect("/echo"))
--   ...
--   assert.equal(0, srv:stop())
--
-- The server listens on 127.0.0.1 on a free port; its log goes to a file
-- (srv.logfile) that srv:log() reads and srv:wait_log(pattern) watches.
--
-- A server cleans up after itself: srv:cleanup() stops it and removes its
-- log, and so do its finalizers — __close, when srv is a to-be-closed
-- variable (at once, even when the spec fails), and __gc (when the object
-- is collected, at the latest when busted exits). A spec that fails before
-- srv:stop() thus leaves no process and no file behind. Keep the object
-- referenced while the server is used: a collected server is stopped.
local core = require "moonws.core"
local client = require "moonws.client"

local testing = {}

local Server = {}
Server.__index = Server

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- A file with something to read (io.open succeeds on a folder too, but
-- reading it fails).
local function is_file(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(0) ~= nil
  f:close()
  return ok
end

-- Files, for specs that write services of their own (a reload, a moved
-- file, an access log to read back): a new empty folder, a whole file
-- written, and a whole file read ("" while there is none).
function testing.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

function testing.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

testing.read_file = read_file

-- The moonws binary a server is started from: bin (opts.bin) when given,
-- else $MOONWS_BIN, else ./build/moonws when it exists (the repository's
-- own specs, run from its top folder), else `moonws` on PATH (an installed
-- one: `make install`). Raises when there is none.
function testing.find_bin(bin)
  if bin then return bin end
  local env = os.getenv("MOONWS_BIN")
  if env and env ~= "" then return env end
  if is_file("build/moonws") then return "build/moonws" end
  for dir in ((os.getenv("PATH") or "") .. ":"):gmatch("([^:]*):") do
    local path = (dir == "" and "." or dir) .. "/moonws"
    if is_file(path) then return path end
  end
  error("moonws.testing: no moonws binary: not in opts.bin, $MOONWS_BIN, ./build/moonws "
        .. "or on PATH (make install puts it in PREFIX/bin)", 3)
end

-- Ends a server that never came up at once, and frees what it holds.
local function kill_now(srv)
  core.kill(srv.pid, "KILL")
  core.wait(srv.pid, 5)
  core.closefd(srv.fd)
  srv.stopped, srv.why = true, "killed"
  os.remove(srv.logfile)
end

-- opts: dir (default "examples"), bin, args (a list of extra arguments),
-- env (variables for the server: NAME = value, or false to remove one),
-- workers (default $MOONWS_TEST_WORKERS, else 1), static, log_level
-- (default "debug"), listeners (how many
-- "listening" lines to wait for, when args add -l listeners), timeout
-- (seconds to wait for them, default 10), tls = { cert =, key =,
-- password =, client_ca = } to add a TLS listener (srv.wss_url,
-- srv.https_url, srv.tls_port), metrics = true to add --metrics
-- 127.0.0.1:0 (srv.metrics_url, srv:scrape()).
function testing.start(opts)
  opts = opts or {}
  local bin = testing.find_bin(opts.bin)
  local argv = { bin, "-l", "127.0.0.1:0", "--log-level", opts.log_level or "debug" }
  -- -w always: the server's own default is the number of CPUs, and a spec
  -- must not depend on the machine.
  local workers = opts.workers or tonumber(os.getenv("MOONWS_TEST_WORKERS") or "") or 1
  argv[#argv + 1] = "-w"; argv[#argv + 1] = tostring(workers)
  if opts.static then argv[#argv + 1] = "--static"; argv[#argv + 1] = opts.static end
  local listeners = opts.listeners or 1
  if opts.tls then
    local t = opts.tls
    for _, a in ipairs({ "--tls-listen", "127.0.0.1:0", "--cert", t.cert }) do argv[#argv + 1] = a end
    if t.key then argv[#argv + 1] = "--key"; argv[#argv + 1] = t.key end
    if t.password then argv[#argv + 1] = "--key-password"; argv[#argv + 1] = t.password end
    if t.client_ca then argv[#argv + 1] = "--client-ca"; argv[#argv + 1] = t.client_ca end
    listeners = listeners + 1
  end
  if opts.metrics then argv[#argv + 1] = "--metrics"; argv[#argv + 1] = "127.0.0.1:0" end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = opts.dir or "examples"
  local logfile = os.tmpname()
  local ok, pid, fd = pcall(core.spawn, argv, { stderr = logfile, env = opts.env })
  if not (ok and pid) then
    os.remove(logfile)
    error(ok and fd or pid, 2)
  end
  -- From here on the object's finalizers own the process and the log.
  local srv = setmetatable({ pid = pid, fd = fd, logfile = logfile, bin = bin, urls = {},
                             workers = workers }, Server)
  local deadline = core.now() + (opts.timeout or 10)
  while true do
    local line, err = core.readline(fd, deadline - core.now())
    if not line then
      local log = srv:log()
      kill_now(srv)
      error(("moonws did not start (%s): %s"):format(err, log), 2)
    end
    local url = line:match("^moonws: listening on (%S+)$")
    if url then
      srv.urls[#srv.urls + 1] = url
    end
    srv.metrics_url = srv.metrics_url or line:match("^moonws: metrics on (%S+)$")
    if #srv.urls >= listeners and (srv.metrics_url or not opts.metrics) then break end
  end
  for _, url in ipairs(srv.urls) do
    if url:match("^wss:") then
      srv.wss_url = srv.wss_url or url
    else
      srv.url = srv.url or url
    end
  end
  if srv.url then
    srv.port = tonumber(srv.url:match(":(%d+)$"))
    srv.http_url = srv.url:gsub("^ws", "http")
  end
  if srv.wss_url then
    srv.tls_port = tonumber(srv.wss_url:match(":(%d+)$"))
    srv.https_url = srv.wss_url:gsub("^wss", "https")
  end
  return srv
end

-- Stops with SIGTERM and returns the exit code (nil, why when it had to be
-- killed or died of a signal).
function Server:stop(timeout)
  if self.stopped then return self.code, self.why end
  core.kill(self.pid, "TERM")
  local code, why = core.wait(self.pid, timeout or 10)
  if not code and why == "timeout" then
    core.kill(self.pid, "KILL")
    core.wait(self.pid, 5)
  end
  core.closefd(self.fd)
  self.stopped, self.code, self.why = true, code, why
  return code, why
end

function Server:signal(name)
  return core.kill(self.pid, name)
end

-- The whole log so far.
function Server:log()
  return read_file(self.logfile)
end

-- Waits until the log has a line matching pattern (a Lua pattern, or a
-- plain string with plain = true); returns that line or nil, "timeout".
-- The log is a file: it is read again every 20 ms.
function Server:wait_log(pattern, timeout, plain)
  local deadline = core.now() + (timeout or 5)
  repeat
    for line in self:log():gmatch("[^\n]+") do
      if line:find(pattern, 1, plain) then return line end
    end
    core.sleep(0.02)
  until core.now() > deadline
  return nil, "timeout"
end

-- How many lines of the log so far contain text (a plain string).
function Server:count_log(text)
  local n = 0
  for line in self:log():gmatch("[^\n]+") do
    if line:find(text, 1, true) then n = n + 1 end
  end
  return n
end

-- client.connect to a path of this server.
function Server:connect(path, opts)
  return client.connect(self.url .. path, opts)
end

-- GET of the metrics listener (opts.metrics): the status and body of
-- /metrics, or of the path given ("/healthz").
function Server:scrape(path, timeout)
  assert(self.metrics_url, "moonws.testing: start the server with metrics = true")
  local base = self.metrics_url:gsub("/metrics$", "")
  return client.http("GET", base .. (path or "/metrics"), nil, nil, timeout)
end

-- client.http to a path of this server.
function Server:http(method, path, body, headers, timeout)
  return client.http(method, self.http_url .. path, body, headers, timeout)
end

-- A raw TCP connection to this server; opts as client.tcp's (bind, rcvbuf).
function Server:tcp(timeout, opts)
  return client.tcp("127.0.0.1", self.port, timeout, nil, opts)
end

-- Stops the server (if it was not) and removes its log file. The
-- finalizers call it; calling it again does nothing.
function Server:cleanup()
  self:stop()
  os.remove(self.logfile)
end

Server.__close = Server.cleanup
Server.__gc = Server.cleanup

-- Reads from a client until its close frame arrives; returns the close
-- code and reason, and the messages that came before it (a list of
-- {data, kind}). nil, why when the connection ended without a close frame.
function testing.until_close(c, timeout)
  local seen = {}
  local deadline = core.now() + (timeout or 5)
  while true do
    local left = deadline - core.now()
    if left <= 0 then return nil, "timeout", seen end
    local data, kind, code = c:receive(left)
    if not data then return nil, kind, seen end
    if kind == "close" then return code, data, seen end
    seen[#seen + 1] = { data, kind }
  end
end

-- A bystander for attack specs: a separate process that echoes through
-- path (default "/echo") every 10 ms while the spec does something hostile,
-- so that the spec can assert everybody else was still served.
--
--   local b = testing.bystander(srv, "/echo")
--   ... the attack ...
--   local st = b:stop("pipelined GETs")   -- { n, failures, p50, p99, max } in seconds
--   assert.equal(0, st.failures)
--
-- With $MOONWS_ATTACK_LOG set, stop(label) also appends one line per attack
-- to that file: the figures quoted in issue notes come from there.
local Bystander = {}
Bystander.__index = Bystander

local function module_dir()
  local src = debug.getinfo(1, "S").source
  return (src:match("^@(.*)/[^/]*$") or ".")
end

function testing.bystander(srv, path, opts)
  opts = opts or {}
  local url = (opts.url or srv.url) .. (path or "/echo")
  local setup = ("package.path=%q; package.cpath=%q"):format(package.path, package.cpath)
  local argv = { opts.lua or "lua5.4", "-e", setup, module_dir() .. "/bystander.lua", url }
  local pid, fd = core.spawn(argv, { stderr = "/dev/null" })
  if not pid then error(fd, 2) end
  local b = setmetatable({ pid = pid, fd = fd, rtts = {}, failures = 0, reasons = {} }, Bystander)
  -- It has begun once its first echo came back.
  local ok = b:wait(1, opts.timeout or 10)
  if not ok then
    b:stop()
    error("the bystander could not echo through " .. url .. ": " .. tostring(b.reasons[1]), 2)
  end
  return b
end

-- Takes one line of the bystander's report into account.
function Bystander:take(line)
  local us = line:match("^ok (%d+)$")
  if us then
    self.rtts[#self.rtts + 1] = tonumber(us) / 1e6
  elseif line:match("^fail") then
    self.failures = self.failures + 1
    self.reasons[#self.reasons + 1] = line
  end
end

-- Waits until the bystander has reported n more echoes (or, with
-- failures = true, n more failures); false, "timeout" when they did not come.
function Bystander:wait(n, timeout, failures)
  local deadline = core.now() + (timeout or 5)
  local function count() return failures and self.failures or #self.rtts end
  local want = count() + (n or 1)
  while count() < want do
    local left = deadline - core.now()
    if left <= 0 then return false, "timeout" end
    local line = core.readline(self.fd, left)
    if not line then return false, "timeout" end
    self:take(line)
  end
  return true
end

local function percentile(sorted, p)
  if #sorted == 0 then return nil end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- Stops the bystander and returns what it saw: n echoes, failures, and the
-- round-trip times p50, p99 and max in seconds (reasons: the failure lines).
function Bystander:stop(label)
  if self.stats then return self.stats end
  core.kill(self.pid, "KILL")
  core.wait(self.pid, 5)
  while true do
    local line = core.readline(self.fd, 1)
    if not line then break end
    self:take(line)
  end
  core.closefd(self.fd)
  table.sort(self.rtts)
  local st = { n = #self.rtts, failures = self.failures, reasons = self.reasons,
               p50 = percentile(self.rtts, 0.5), p99 = percentile(self.rtts, 0.99),
               max = self.rtts[#self.rtts] }
  self.stats = st
  local log = os.getenv("MOONWS_ATTACK_LOG")
  if log and label then
    local f = io.open(log, "a")
    if f then
      f:write(("%s: %d echoes, %d failures, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n"):format(
        label, st.n, st.failures, (st.p50 or 0) * 1e3, (st.p99 or 0) * 1e3, (st.max or 0) * 1e3))
      f:close()
    end
  end
  return st
end

-- A bystander left running by a failed spec ends with it or with busted.
Bystander.__close = function(b) b:stop() end
Bystander.__gc = Bystander.__close

-- The server's resident memory now and at its peak, in bytes (Linux).
function Server:rss()
  local s = read_file(("/proc/%d/status"):format(self.pid))
  local now, peak = s:match("VmRSS:%s*(%d+) kB"), s:match("VmHWM:%s*(%d+) kB")
  return now and tonumber(now) * 1024, peak and tonumber(peak) * 1024
end

-- How many file descriptors the server has open (Linux).
function Server:fds()
  local p = io.popen(("ls /proc/%d/fd 2>/dev/null | wc -l"):format(self.pid))
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

return testing
