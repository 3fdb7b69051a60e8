-- A fixed path that a parameter path (/rooms/:room) also matches: it wins.
local lobby = { path = "/rooms/lobby" }

function lobby.onOpen(caller)
  caller:send("the lobby")
end

return lobby
