-- The bystander's service: every message comes back as it was.
local echo = {}
function echo.onText(caller, text) caller:send(text) end
return echo
