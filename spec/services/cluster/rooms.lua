-- A parameter path for spec/cluster_spec.lua: a text message is broadcast
-- to the connections opened at the same concrete path (/rooms/NAME), on
-- every node.
local rooms = { path = "/rooms/:room" }

function rooms.onOpen(caller)
  caller:send("in " .. caller.params.room)
end

function rooms.onText(caller, text)
  moonws.broadcast(caller.path, text)
end

return rooms
