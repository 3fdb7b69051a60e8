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
--
-- It is correct with any number of workers (-w N): publish and broadcast
-- reach every worker's clients, and what is counted for the whole server
-- lives in a shared dictionary (moonws.dict), not in moonws.shared or in
-- moonws.connections, which are one worker's.
local chat = {
  protocols = { "chat.v1" },
  idle_timeout = 300,
  dispatch = "event",
}

-- "messages", and "room:NAME" -> members; survives hot reloads.
local stats = moonws.dict("chat")

local function leave(caller)
  local room = caller.data.room
  if not room then return end
  stats:incr("room:" .. room, -1)        -- atomic: another worker may count it too
  moonws.publish("room:" .. room, { event = "left", who = caller.data.name, room = room })
end

local function join(caller, room)
  if caller.data.room then
    caller:unsubscribe("room:" .. caller.data.room)
    leave(caller)
  end
  stats:incr("room:" .. room, 1, 0)
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
  stats:incr("messages", 1, 0)
  moonws.publish("room:" .. caller.data.room,
    { event = "said", who = caller.data.name, room = caller.data.room, text = msg.text })
end

function chat.onMessage(caller, msg)
  caller:send({ event = "error", error = "unknown event" })
end

function chat.onClose(caller)
  leave(caller)
end

chat.http = {
  ["POST /broadcast"] = function(req)
    moonws.broadcast("/chat", req.body)   -- every worker's clients
    return 200, { delivered = moonws.count("/chat") }
  end,
  ["GET /stats"] = function(req)
    local rooms = {}
    for _, key in ipairs(stats:keys(0)) do
      local room = key:match("^room:(.*)")
      local n = room and stats:get(key)
      if n and n > 0 then rooms[room] = n end
    end
    return 200, { connections = moonws.count("/chat"), rooms = rooms,
                  messages = stats:get("messages") or 0 }
  end,
}

return chat
