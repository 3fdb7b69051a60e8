-- Small limits, to reach them quickly.
local l = { max_message = 1024, max_backpressure = 4096 }
local seen = moonws.dict("limits")     -- the process's: any worker answers GET /flood

function l.onText(caller, text)
  if text == "flood" then
    for i = 1, 100 do
      if not caller:send(string.rep("x", 1000)) then
        seen:set("flood_stopped_at", i)
        break
      end
    end
  elseif text == "chunk" then
    caller:send(string.rep("y", 3000))   -- under the limit, one call at a time
  else
    caller:send(text)
  end
end

function l.onBinary(caller, b)
  caller:sendBinary(b)
end

l.http = {
  ["GET /flood"] = function() return 200, tostring(seen:get("flood_stopped_at")) end,
}

return l
