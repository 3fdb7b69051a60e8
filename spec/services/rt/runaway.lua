-- Handlers that never end by themselves: the CPU budget must stop them.
local r = {}

function r.onText(caller, text)
  if text == "spin" then
    while true do end
  elseif text == "spin_pcall" then
    -- a script that swallows errors must still be stopped
    while true do pcall(function() while true do end end) end
  else
    caller:send("fine " .. text)
  end
end

function r.onError(caller, err)
  moonws.shared.err = err
end

r.http = {
  ["GET /err"] = function() return 200, moonws.shared.err or "" end,
}

return r
