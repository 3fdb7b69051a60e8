-- A near miss of a handler name is an error, not a silently unused field.
local m = { online = true }   -- "on" + lower case: an ordinary field

function m.onmessage(caller, msg) end

return m
