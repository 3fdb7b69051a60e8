-- A bystander: a separate process that keeps one client echoing through a
-- server while a spec attacks it, so the spec can tell whether everybody
-- else was still served, and how promptly. Started by
-- testing.bystander(srv); not used directly.
--
--   lua5.4 bystander.lua URL
--
-- It connects, then sends a 32-byte text message every 10 ms and waits for
-- its echo, printing one line per round trip on stdout: "ok MICROSECONDS",
-- or "fail REASON" when the message or the connection was lost (then it
-- connects again). It runs until it is killed.
local core = require "moonws.core"
local client = require "moonws.client"

local url = assert(arg[1], "usage: bystander.lua URL")
local payload = string.rep("b", 32)
io.stdout:setvbuf("line")

local c
while true do
  if not c then
    local err
    c, err = client.connect(url, { timeout = 5 })
    if not c then
      io.stdout:write("fail connect: ", tostring(err), "\n")
      core.sleep(0.05)
    end
  end
  if c then
    local t0 = core.now()
    local ok, err = c:send(payload)
    local data, kind
    if ok then data, kind = c:receive(5) end
    if data == payload and kind == "text" then
      io.stdout:write(("ok %d\n"):format(math.floor((core.now() - t0) * 1e6)))
    else
      io.stdout:write("fail ", tostring(err or kind or "no echo"), "\n")
      c:close()
      c = nil
    end
    core.sleep(0.01)
  end
end
