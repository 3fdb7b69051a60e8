-- The Ballerina-style handler names, require "moonws" and moonws.json.
local moon = require "moonws"
local a = {}

function a.onTextMessage(caller, text)
  local v = moon.json.decode(text)
  if v == nil then
    local _, err = moon.json.decode(text)
    caller:send("not json: " .. tostring(err ~= nil))
    return
  end
  v.seen = true
  caller:send(moon.json.encode(v))
end

function a.onBinaryMessage(caller, bytes)
  caller:sendBinary(bytes:reverse())
end

return a
