-- A chat with rooms. A visitor is called by ?name=, or "guest<id>" — distinct
-- for every connection — and hears its name first: {"event": "welcome",
-- "name": "guest7"} (the page keeps it when it reconnects). Clients send
-- JSON events:
--   {"event": "join", "room": "lobby"}     (joining a room leaves the previous one)
--   {"event": "say", "text": "hello"}
-- A client is in no room until it joins one (the page joins "lobby"), so a
-- connection that only listens costs nothing to the others: joins and
-- leaves are announced to the room, and a room of N members hears N
-- announcements, not every client of the server.
-- POST /chat/broadcast sends its body to every client; GET /chat/stats
-- tells who is where.
local chat = {
  protocols = { "chat.v1" },
  idle_timeout = 300,
  dispatch = "event",
}

local stats = moonws.shared          -- survives hot reloads
stats.messages = stats.messages or 0

local function join(caller, room)
  if caller.data.room then
    caller:unsubscribe("room:" .. caller.data.room)
    moonws.publish("room:" .. caller.data.room,
      { event = "left", who = caller.data.name, room = caller.data.room })
  end
  caller.data.room = room
  caller:subscribe("room:" .. room)
  moonws.publish("room:" .. room, { event = "joined", who = caller.data.name, room = room })
end

function chat.onOpen(caller)
  local name = caller.query.name
  if type(name) ~= "string" or name == "" then name = "guest" .. caller.id end
  caller.data.name = name
  caller:send({ event = "welcome", name = name })
end

function chat.onJoin(caller, msg)
  if type(msg.room) ~= "string" or msg.room == "" then
    return caller:send({ event = "error", error = "join needs a room" })
  end
  join(caller, msg.room)
end

function chat.onSay(caller, msg)
  if type(msg.text) ~= "string" then
    return caller:send({ event = "error", error = "say needs a text" })
  end
  if not caller.data.room then
    return caller:send({ event = "error", error = "join a room first" })
  end
  stats.messages = stats.messages + 1
  moonws.publish("room:" .. caller.data.room,
    { event = "said", who = caller.data.name, room = caller.data.room, text = msg.text })
end

function chat.onMessage(caller, msg)
  caller:send({ event = "error", error = "unknown event" })
end

function chat.onClose(caller)
  if caller.data.room then
    moonws.publish("room:" .. caller.data.room,
      { event = "left", who = caller.data.name, room = caller.data.room })
  end
end

chat.http = {
  ["POST /broadcast"] = function(req)
    local n = moonws.broadcast("/chat", req.body)
    return 200, { delivered = n }
  end,
  ["GET /stats"] = function(req)
    local rooms = {}
    for caller in moonws.connections("/chat") do
      local room = caller.data.room or "?"
      rooms[room] = (rooms[room] or 0) + 1
    end
    return 200, { connections = moonws.count("/chat"), rooms = rooms, messages = stats.messages }
  end,
}

return chat
