-- Pushes the time to every client once a second.
local ticker = {}

moonws.every(1, function()
  moonws.broadcast("/ticker", { time = os.time(), clock = os.date("!%Y-%m-%dT%H:%M:%SZ") })
end)

function ticker.onOpen(caller)
  caller:send({ hello = "ticks arrive every second" })
end

return ticker
