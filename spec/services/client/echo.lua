-- Echoes, and tells which sub-protocol was chosen.
local echo = { protocols = { "a", "b" } }
function echo.onText(caller, text)
  if text == "protocol" then return tostring(caller.protocol) end
  return text
end
return echo
