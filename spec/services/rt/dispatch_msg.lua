-- dispatch with onMessage as the fallback.
local d = { dispatch = "type" }

function d.onPing_pong(caller, msg) end   -- an odd but legal custom name

function d.onUserUpdate(caller, msg)
  caller:send({ handler = "onUserUpdate", name = msg.name })
end

function d.onMessage(caller, msg)
  caller:send({ handler = "onMessage", type = type(msg) == "table" and msg.type or type(msg) })
end

return d
