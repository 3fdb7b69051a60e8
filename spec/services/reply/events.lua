-- A dispatched handler and onMessage reply by returning too.
local s = { dispatch = "event" }

function s.onPing(caller, data)
  return "not a reply: onPing's return is ignored"
end

function s.onAdd(caller, msg)
  return { sum = msg.a + msg.b }
end

function s.onMessage(caller, msg)
  return { echoed = msg }
end

return s
