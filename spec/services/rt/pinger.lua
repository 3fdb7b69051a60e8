-- An onPing handler: no automatic pong.
local p = {}

function p.onPing(caller, data)
  caller:send("ping seen: " .. data)
end

return p
