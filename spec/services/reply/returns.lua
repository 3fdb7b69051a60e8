-- Replies by return value, and headers for the 101 from onUpgrade.
local s = {}

function s.onUpgrade(req)
  local bad = req.query.bad
  if bad == "upgrade" then return true, { Upgrade = "h2c" } end
  if bad == "accept" then return true, { ["Sec-WebSocket-Accept"] = "x" } end
  if bad == "length" then return true, { ["Content-Length"] = "0" } end
  if bad == "newline" then return true, { ["X-A"] = "a\r\nb" } end
  if bad == "name" then return true, { ["bad name"] = "x" } end
  return true, { ["Set-Cookie"] = { "a=1; Path=/", "b=2" }, ["X-Room"] = "lobby" }
end

local replies = {
  text = function() return "hello" end,
  table = function() return { n = 1, list = moonws.json.array() } end,
  binary = function() return moonws.binary("\0\1\2") end,
  close = function() return moonws.close(4000, "bye") end,
  nothing = function() return nil end,
  sent = function(caller) return caller:send("sent by hand") end,
  number = function() return 42 end,
  badutf8 = function() return "\255" end,
  ["function"] = function() return print end,
  selfref = function() local t = {} t.t = t return t end,
}

function s.onText(caller, text)
  if text == "echo é" then return text end
  return replies[text](caller)
end

function s.onBinary(caller, data)
  return moonws.binary(data:reverse())
end

-- The process's: any worker answers GET /err.
local last = moonws.dict("reply-err")

function s.onError(caller, err)
  last:set("err", tostring(err))
end

s.http = {
  ["GET /err"] = function() return 200, last:get("err") or "" end,
  ["GET /cookie"] = function() return 200, "c", { ["Set-Cookie"] = { "x=1", "y=2" } } end,
  ["GET /reserved"] = function() return 200, "c", { ["Transfer-Encoding"] = "chunked" } end,
}

return s
