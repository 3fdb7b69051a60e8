-- The chat page (examples/public/index.html with examples/chat.lua) in a real
-- headless Chromium, driven through the DevTools protocol with the project's
-- own WebSocket client: two visitors, their messages, an HTTP broadcast, and
-- what a visitor sees while the server is away.
--
-- Chromium is Debian's `chromium` (scripts/deps test installs it). When it
-- is not installed or does not start, these specs are pending, with the
-- reason; they never pass without a browser.
local testing = require "moonws.testing"
local client = require "moonws.client"
local core = require "moonws.core"
local cjson = require "cjson"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- ---- the DevTools protocol, over moonws.client ----

-- One DevTools connection (the browser's, or one page's).
local Cdp = {}
Cdp.__index = Cdp

local function cdp_connect(url)
  local c, err = client.connect(url, { timeout = 10, max_message = 64 * 1024 * 1024 })
  if not c then error("DevTools: cannot connect to " .. url .. ": " .. tostring(err), 2) end
  return setmetatable({ c = c, n = 0 }, Cdp)
end

-- Sends a command and returns its result; events that arrive meanwhile are
-- not needed here and are dropped. Raises on an error answer.
function Cdp:call(method, params, timeout)
  self.n = self.n + 1
  local id = self.n
  assert(self.c:send(cjson.encode({ id = id, method = method, params = params or {} })))
  local deadline = core.now() + (timeout or 10)
  while true do
    local data, kind = self.c:receive(math.max(0.01, deadline - core.now()))
    if not data then error(("DevTools %s: %s"):format(method, kind), 2) end
    if kind == "text" then
      local m = cjson.decode(data)
      if m.id == id then
        if m.error then error(("DevTools %s: %s"):format(method, m.error.message), 2) end
        return m.result
      end
    end
  end
end

-- Evaluates JavaScript in the page (a promise is awaited) and returns its
-- value; raises with the page's exception.
function Cdp:eval(js, timeout)
  local r = self:call("Runtime.evaluate",
    { expression = js, awaitPromise = true, returnByValue = true }, (timeout or 10) + 5)
  if r.exceptionDetails then
    local e = r.exceptionDetails
    error("in the page: " .. ((e.exception and e.exception.description) or e.text), 2)
  end
  return r.result.value
end

-- Waits, inside the page, until the expression is truthy; returns its value,
-- or nil after timeout seconds.
function Cdp:wait_for(expr, timeout)
  local ms = math.floor((timeout or 10) * 1000)
  local v = self:eval(([[new Promise((resolve) => {
    const end = Date.now() + %d;
    (function check() {
      let v;
      try { v = (%s); } catch (e) { v = undefined; }
      if (v) return resolve(v);
      if (Date.now() > end) return resolve(null);
      setTimeout(check, 20);
    })();
  })]]):format(ms, expr), timeout)
  if v == cjson.null then return nil end
  return v
end

-- Types text into the chat's box and presses Enter, as a visitor does.
function Cdp:type_and_send(text)
  self:eval([[document.getElementById("text").focus(); true]])
  if text then self:call("Input.insertText", { text = text }) end
  for _, t in ipairs({ "keyDown", "keyUp" }) do
    self:call("Input.dispatchKeyEvent", { type = t, key = "Enter", code = "Enter",
      windowsVirtualKeyCode = 13, nativeVirtualKeyCode = 13, text = t == "keyDown" and "\r" or nil })
  end
end

-- What the page shows: the state line, the name box, the lines of the log.
function Cdp:view()
  return self:eval([[({
    state: document.getElementById("state").textContent,
    name: document.getElementById("name").value,
    box: document.getElementById("text").value,
    log: [...document.querySelectorAll("#log p")].map((p) => p.textContent),
  })]])
end

local function js_string(s)
  return cjson.encode(s)
end

-- The page's log has a line equal to text.
local function log_has(text)
  return ([[ [...document.querySelectorAll("#log p")].some((p) => p.textContent === %s) ]]):format(js_string(text))
end

-- ---- the browser ----

local Browser = {}
Browser.__index = Browser

local function find_chromium()
  for _, name in ipairs({ "chromium", "chromium-browser" }) do
    local path = sh("command -v " .. name .. " 2>/dev/null")
    if path ~= "" then return path end
  end
end

-- Starts Chromium with a new profile in a temporary folder, in a process
-- group of its own (its zygotes, GPU process and renderers — the tabs — are
-- all in it), and connects to it. nil, why when it cannot.
local function start_browser()
  local bin = find_chromium()
  if not bin then
    return nil, "chromium is not installed (scripts/deps test installs Debian's chromium)"
  end
  local dir = sh("mktemp -d")
  local pid, fd = core.spawn({ bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--remote-debugging-port=0", "--user-data-dir=" .. dir, "about:blank" },
    { stderr = dir .. "/chromium.log", pgroup = true })
  if not pid then
    os.execute("rm -rf " .. dir)
    return nil, "chromium cannot be started: " .. tostring(fd)
  end
  local b = setmetatable({ pid = pid, fd = fd, dir = dir, pages = {} }, Browser)
  -- Chromium writes the port it chose, and the browser's path, into its profile.
  local deadline = core.now() + 30
  local port, path
  repeat
    local s = read(dir .. "/DevToolsActivePort")
    if s then port, path = s:match("^(%d+)\n(/devtools/browser/%S+)") end
    if not port then core.sleep(0.05) end
  until port or core.now() > deadline
  if not port then
    local log = read(dir .. "/chromium.log") or ""
    b:quit()
    return nil, "chromium did not start within 30 s: " .. log:sub(-2000)
  end
  b.port = tonumber(port)
  b.cdp = cdp_connect(("ws://127.0.0.1:%d%s"):format(b.port, path))
  return b
end

-- Opens a tab on url; returns its DevTools connection. The tab starts
-- blank and is then sent to url, so that what is evaluated afterwards runs
-- in the page and not in the blank document it replaces.
function Browser:open(url)
  local target = self.cdp:call("Target.createTarget", { url = "about:blank" }).targetId
  local page = cdp_connect(("ws://127.0.0.1:%d/devtools/page/%s"):format(self.port, target))
  page.target = target
  self.pages[#self.pages + 1] = page
  local nav = page:call("Page.navigate", { url = url }, 15)
  if nav.errorText then error("cannot load " .. url .. ": " .. nav.errorText, 2) end
  return page
end

-- How many processes of the group pgid are still there (zombies included),
-- from /proc: "PID (COMM) STATE PPID PGRP ...", COMM being anything.
local function group_left(pgid)
  local n = 0
  for pid in sh("ls /proc"):gmatch("%d+") do
    local stat = read("/proc/" .. pid .. "/stat")
    if stat and tonumber(stat:match("^.*%) %a %d+ (%d+)")) == pgid then n = n + 1 end
  end
  return n
end

-- Closes every tab and the browser, kills whatever of its process group is
-- left, and removes the profile. Returns how many processes of the group
-- were still there after all that (0). Runs once; the finalizers call it
-- too, so a failed spec leaves no browser behind.
function Browser:quit()
  if self.left then return self.left end
  for _, page in ipairs(self.pages) do
    if self.cdp then pcall(self.cdp.call, self.cdp, "Target.closeTarget", { targetId = page.target }, 5) end
    pcall(page.c.close, page.c)
  end
  if self.cdp then
    pcall(self.cdp.call, self.cdp, "Browser.close", nil, 5)
    pcall(self.cdp.c.close, self.cdp.c)
  end
  if not core.wait(self.pid, 5) then
    core.kill(-self.pid, "KILL")
    core.wait(self.pid, 5)
  end
  -- Its children (zygotes, renderers) end with it; any that did not, now.
  core.kill(-self.pid, "KILL")
  local deadline = core.now() + 10
  while group_left(self.pid) > 0 and core.now() < deadline do core.sleep(0.05) end
  core.closefd(self.fd)
  os.execute("rm -rf " .. self.dir)
  self.left = group_left(self.pid)
  return self.left
end

Browser.__close = Browser.quit
Browser.__gc = Browser.quit

-- ---- the specs ----

describe("the chat page in headless Chromium", function()
  local srv, browser, skip

  lazy_setup(function()
    srv = testing.start{ dir = "examples", static = "examples/public", log_level = "info" }
    browser, skip = start_browser()
  end)

  lazy_teardown(function()
    if browser then assert.equal(0, browser:quit(), "chromium processes left running") end
    if srv then
      assert.equal(0, srv:stop())
      srv:cleanup()
    end
  end)

  -- The state line says "online as NAME" once the welcome came.
  local function online(page, timeout)
    return page:wait_for([[(/^online as (\S+)$/.exec(document.getElementById("state").textContent) || [])[1] ]],
      timeout or 15)
  end

  local ann, bo, ann_name, bo_name

  it("connects on load, and gives two visitors distinct names", function()
    if skip then pending(skip) end
    ann = browser:open(srv.http_url .. "/")
    ann_name = online(ann)
    assert(ann_name, "the first page did not come online: " .. cjson.encode(ann:view()))
    assert(ann:wait_for(log_has(ann_name .. " joined lobby"), 10), cjson.encode(ann:view()))
    bo = browser:open(srv.http_url .. "/")
    bo_name = online(bo)
    assert(bo_name, "the second page did not come online: " .. cjson.encode(bo:view()))
    assert.matches("^guest%d+$", ann_name)
    assert.matches("^guest%d+$", bo_name)
    assert.not_equal(ann_name, bo_name)
    assert.equal(ann_name, ann:view().name)
    -- Both joined the lobby: the first page heard the second arrive.
    assert(ann:wait_for(log_has(bo_name .. " joined lobby"), 10), cjson.encode(ann:view()))
  end)

  it("carries messages typed in one page to both, and an HTTP broadcast to both", function()
    if skip then pending(skip) end
    assert(ann and bo, "the pages of the previous spec are missing")
    ann:type_and_send("hello from ann")
    local line = ("[lobby] %s: hello from ann"):format(ann_name)
    assert(ann:wait_for(log_has(line), 10), cjson.encode(ann:view()))
    assert(bo:wait_for(log_has(line), 10), cjson.encode(bo:view()))
    assert.equal("", ann:view().box)                 -- sent, so the box is empty

    bo:type_and_send("hi ann")
    line = ("[lobby] %s: hi ann"):format(bo_name)
    assert(ann:wait_for(log_has(line), 10), cjson.encode(ann:view()))
    assert(bo:wait_for(log_has(line), 10), cjson.encode(bo:view()))

    local status, body = srv:http("POST", "/chat/broadcast", "the kitchen is closing")
    assert.equal(200, status)
    assert.equal(2, cjson.decode(body).delivered)
    assert(ann:wait_for(log_has("the kitchen is closing"), 10), cjson.encode(ann:view()))
    assert(bo:wait_for(log_has("the kitchen is closing"), 10), cjson.encode(bo:view()))
  end)

  it("says so when a message is sent while offline, keeps it, and reconnects", function()
    if skip then pending(skip) end
    assert(ann and bo, "the pages of the previous spec are missing")
    -- The server goes away (a restart, say): the pages hear close 1001.
    local port = srv.port
    assert.equal(0, srv:stop())
    srv:cleanup()
    assert(ann:wait_for([[document.getElementById("state").textContent.startsWith("offline (1001)")]], 10),
      cjson.encode(ann:view()))

    ann:type_and_send("are you there?")
    assert(ann:wait_for(log_has("offline: not sent (it is still in the box); reconnecting now…"), 10),
      cjson.encode(ann:view()))
    assert.equal("are you there?", ann:view().box)

    -- The server comes back on the same port; both pages reconnect by
    -- themselves, under the names they had.
    srv = testing.start{ dir = "examples", static = "examples/public", log_level = "info",
                         args = { "-l", "127.0.0.1:" .. port }, listeners = 2 }
    assert.equal(ann_name, online(ann, 20), cjson.encode(ann:view()))
    assert.equal(bo_name, online(bo, 20), cjson.encode(bo:view()))
    -- Joined again: the lobby has both.
    local status, body = srv:http("GET", "/chat/stats")
    assert.equal(200, status)
    assert.equal(2, cjson.decode(body).rooms.lobby)

    ann:type_and_send(nil)                           -- Enter again: the kept text goes now
    local line = ("[lobby] %s: are you there?"):format(ann_name)
    assert(bo:wait_for(log_has(line), 10), cjson.encode(bo:view()))
    assert.equal("", ann:view().box)
  end)
end)
