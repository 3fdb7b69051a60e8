-- Traffic lines (docs/operations.md): at --log-level debug in the log, in
-- text and JSON, and in the --access-log file, reopened on SIGUSR1.
local testing = require "moonws.testing"
local core = require "moonws.core"


-- Waits until the file at path has a line containing text (plain).
local function wait_file(path, text, timeout)
  local deadline = core.now() + (timeout or 5)
  repeat
    for line in testing.read_file(path):gmatch("[^\n]+") do
      if line:find(text, 1, true) then return line end
    end
    core.sleep(0.02)
  until core.now() > deadline
  error(("%s: no line with %q in:\n%s"):format(path, text, testing.read_file(path)))
end

-- One WebSocket connection's life: an echo, a close with 1000.
local function converse(srv, path)
  local c = assert(srv:connect(path))
  assert(c:send("hello"))
  assert.equal("hello", c:receive(5))
  assert.equal(1000, c:close(1000))
end

describe("traffic lines", function()
  it("are written at debug in text: requests, upgrades, opens and closes", function()
    local srv <close> = testing.start{ dir = "spec/services/metrics" }
    converse(srv, "/m/chat?access_token=s3cret")
    assert.equal(404, (srv:http("GET", "/nope?x=1")))
    local close = assert(srv:wait_log("ws-close conn=", 5, true))
    assert.matches("%[debug%] .*ws%-close conn=%d+ remote=127%.0%.0%.1:%d+ path=/m/chat "
                   .. "secure=false code=1000 us=%d+ in_msgs=1 in_bytes=5 out_msgs=1 out_bytes=5$",
                   close)
    local open = assert(srv:wait_log("ws-open conn=", 5, true))
    assert.matches("ws%-open conn=%d+ remote=127%.0%.0%.1:%d+ path=/m/chat secure=false$", open)
    local up = assert(srv:wait_log("status=101", 5, true))
    assert.matches("http conn=%d+ remote=127%.0%.0%.1:%d+ method=GET path=/m/chat status=101 "
                   .. "bytes=0 us=%d+ secure=false$", up)
    local nope = assert(srv:wait_log("path=/nope", 5, true))
    assert.matches("http conn=%d+ remote=127%.0%.0%.1:%d+ method=GET path=/nope status=404 "
                   .. "bytes=%d+ us=%d+ secure=false$", nope)
    -- A query never reaches a traffic line: it may carry a token.
    assert.is_nil(srv:log():find("s3cret", 1, true))
    assert.equal(0, srv:stop())
  end)

  it("are JSON objects with --log-format json", function()
    local srv <close> = testing.start{ dir = "spec/services/metrics", args = { "--log-format", "json" } }
    converse(srv, "/m/chat")
    local close = assert(srv:wait_log('"msg":"ws-close"', 5, true))
    assert.matches('^{"ts":"[^"]+","level":"debug","msg":"ws%-close",', close)
    assert.matches('"path":"/m/chat","protocol":null,"secure":false,"code":1000,"us":%d+,'
                   .. '"in_msgs":1,"in_bytes":5,"out_msgs":1,"out_bytes":5}$', close)
    local up = assert(srv:wait_log('"status":101', 5, true))
    assert.matches('"msg":"http".*"method":"GET","path":"/m/chat","status":101,"bytes":0,', up)
    assert.equal(0, srv:stop())
  end)

  it("are not written at info", function()
    local srv <close> = testing.start{ dir = "spec/services/metrics", log_level = "info" }
    converse(srv, "/m/chat")
    assert.equal(404, (srv:http("GET", "/nope")))
    assert.equal(0, srv:stop())
    assert.is_nil(srv:log():find("ws-close", 1, true))
    assert.is_nil(srv:log():find("status=404", 1, true))
  end)
end)

describe("--access-log", function()
  it("gets the lines at info, and a new file after a rename and SIGUSR1", function()
    local file = os.tmpname()
    os.remove(file)
    local srv <close> = testing.start{ dir = "spec/services/metrics", log_level = "info",
                                       args = { "--access-log", file } }
    converse(srv, "/m/chat")
    local line = wait_file(file, "ws-close")
    assert.matches("%[info%] .*ws%-close conn=%d+ .*code=1000", line)
    wait_file(file, "status=101")
    -- Not in the log at info.
    assert.is_nil(srv:log():find("ws-close", 1, true))

    assert(os.rename(file, file .. ".1"))
    assert(srv:signal("USR1"))
    -- The server reopens by name; until it has, lines still reach the old
    -- file: ask until one reaches the new one.
    local deadline = core.now() + 5
    local n = 0
    repeat
      n = n + 1
      assert.equal(404, (srv:http("GET", "/after-" .. n)))
      if testing.read_file(file):find("path=/after-", 1, true) then break end
      core.sleep(0.02)
    until core.now() > deadline
    assert.truthy(testing.read_file(file):find("path=/after-" .. n, 1, true))
    -- Nothing was lost or split: each request is in exactly one file.
    for i = 1, n do
      local in_old = testing.read_file(file .. ".1"):find("path=/after-" .. i .. " ", 1, true) ~= nil
      local in_new = testing.read_file(file):find("path=/after-" .. i .. " ", 1, true) ~= nil
      assert.is_true(in_old ~= in_new, "request " .. i)
    end
    assert.equal(0, srv:stop())
    os.remove(file)
    os.remove(file .. ".1")
  end)

  it("that cannot be opened stops the server with exit 2", function()
    local bin = testing.find_bin()
    local ok, _, code = os.execute(bin .. " --access-log /nonexistent/x/access.log "
                                   .. "spec/services/metrics 2>/dev/null")
    assert.is_falsy(ok)
    assert.equal(2, code)
  end)
end)
