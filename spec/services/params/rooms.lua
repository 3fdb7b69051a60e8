-- A room per path: /rooms/lobby, /rooms/kitchen, ... (lobby has a service
-- of its own, which wins: a fixed path beats a parameter).
local rooms = {
  path = "/rooms/:room",
}

function rooms.onUpgrade(req)
  req.data = { room_at_upgrade = req.params.room }
end

function rooms.onOpen(caller)
  caller:send({ params = caller.params, data = caller.data.room_at_upgrade, path = caller.path })
end

function rooms.onText(caller, text)
  -- a concrete path reaches only the connections opened at it
  moonws.broadcast(caller.path, caller.params.room .. ": " .. text)
end

rooms.http = {
  ["GET /who"] = function(req)
    local ids = moonws.json.array()
    for c in moonws.connections("/rooms/" .. req.params.room) do ids[#ids + 1] = c.id end
    return 200, { room = req.params.room, ids = ids,
                  all = moonws.count("/rooms/:room"), here = moonws.count(req.path:match("^(.*)/who$")) }
  end,
  ["GET /items/:item"] = function(req)
    return 200, req.params
  end,
  ["GET /items/special"] = function(req)
    return 200, { special = true, params = req.params }
  end,
  ["POST /items/:item"] = function(req)
    return 201, "posted " .. req.params.item
  end,
}

return rooms
