-- idle_timeout of 1 s and no onIdleTimeout: an idle client is closed 1001.
local idle = { idle_timeout = 1 }

function idle.onText(caller, text) caller:send(text) end
function idle.onBinary(caller, bytes) caller:sendBinary(bytes) end

return idle
