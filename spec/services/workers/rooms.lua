-- Connections by concrete path, for moonws.count across workers.
local rooms = { path = "/rooms/:room" }

function rooms.onOpen(caller)
  caller:send(tostring(moonws.worker))
end

function rooms.onText(caller, path)
  return tostring(moonws.count(path))
end

return rooms
