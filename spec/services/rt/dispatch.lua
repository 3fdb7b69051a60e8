-- dispatch = "event": {"event": "join_room"} goes to onJoinRoom.
local d = { dispatch = "event" }

function d.onJoinRoom(caller, msg)
  caller:send({ handler = "onJoinRoom", room = msg.room })
end

function d.onLeaveRoom(caller, msg)
  caller:send({ handler = "onLeaveRoom" })
end

function d.onText(caller, text)
  caller:send({ handler = "onText", text = text })
end

return d
