-- Pushes the time to every client once a second. One timer for the whole
-- server: with several workers (-w N) each loads this file, so the timer
-- runs on worker 1 only, and its broadcast reaches every worker's clients.
local ticker = {}

if moonws.worker == 1 then
  moonws.every(1, function()
    moonws.broadcast("/ticker", { time = os.time(), clock = os.date("!%Y-%m-%dT%H:%M:%SZ") })
  end)
end

function ticker.onOpen(caller)
  caller:send({ hello = "ticks arrive every second" })
end

return ticker
