local idle = { idle_timeout = 0.5 }

function idle.onIdleTimeout(caller)
  caller:send("are you there?")
end

function idle.onText(caller, text)
  caller:send("heard " .. text)
end

return idle
