-- A service table whose metatable answers every missing field with an
-- error: the server reads a service's table raw, so this runs nowhere
-- outside a handler (where it would be an error no call protects).
local t = { dispatch = "event" }

function t.onMessage(caller, msg)
  caller:send("plain " .. tostring(msg.event))
end

return setmetatable(t, { __index = function(_, k) error("trap: " .. tostring(k)) end })
