local t = {}

function t.onText(caller, text)
  if text == "after" then
    moonws.after(0.05, function() caller:send("fired") end)
  elseif text == "every" then
    local n = 0
    local timer
    timer = moonws.every(0.02, function()
      n = n + 1
      caller:send("tick " .. n)
      if n == 3 then
        caller:send("cancel " .. tostring(timer:cancel()) .. " " .. tostring(timer:active()))
      end
    end)
  elseif text == "cancel" then
    local timer = moonws.after(0.05, function() caller:send("should not fire") end)
    caller:send("cancelled " .. tostring(timer:cancel()))
    moonws.after(0.1, function() caller:send("later") end)
  elseif text == "error" then
    moonws.after(0.01, function() error("timer failure") end)
    moonws.after(0.05, function() caller:send("still running") end)
  end
end

return t
