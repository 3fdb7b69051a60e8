-- The bystander's service: every message straight back.
local echo = {}

function echo.onText(caller, text) caller:send(text) end
function echo.onBinary(caller, bytes) caller:sendBinary(bytes) end

return echo
