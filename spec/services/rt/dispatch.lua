-- dispatch = "event": {"event": "join_room"} goes to onJoinRoom.
local d = { dispatch = "event" }
-- Closes counted for the process: any worker answers GET /closed.
local closed = moonws.dict("dispatch")

function d.onJoinRoom(caller, msg)
  caller:send({ handler = "onJoinRoom", room = msg.room })
end

function d.onLeaveRoom(caller, msg)
  caller:send({ handler = "onLeaveRoom" })
end

function d.onText(caller, text)
  caller:send({ handler = "onText", text = text })
end

-- Lifecycle handlers are never a dispatch target: {"event": "close"} is
-- an ordinary message.
function d.onClose(caller, code)
  closed:incr("n", 1, 0)
end

d.http = {
  ["GET /closed"] = function() return 200, tostring(closed:get("n") or 0) end,
}

return d
