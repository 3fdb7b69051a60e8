-- /fan: subscribers for scripts/bench's publish and send tests. Every
-- connection subscribes to "fan" and lists its id in a shared dictionary;
-- POST /fan/publish publishes the body to the topic, POST /fan/send sends
-- it to every listed id with moonws.send. With several workers the POST
-- lands on one of them, and the others' subscribers are reached through
-- their inboxes: what these tests measure.
local fan = {}
local ids = moonws.dict("fan-ids", "4M")    -- 10 000 ids take about 700 KB

function fan.onOpen(caller)
  caller:subscribe("fan")
  ids:set(tostring(caller.id), true)
end

function fan.onClose(caller)
  ids:delete(tostring(caller.id))
end

fan.http = {
  ["POST /publish"] = function(req)
    moonws.publish("fan", req.body)
    return 200, ""
  end,
  ["POST /send"] = function(req)
    for _, id in ipairs(ids:keys(0)) do
      moonws.send(math.tointeger(tonumber(id)), req.body)
    end
    return 200, ""
  end,
}

return fan
