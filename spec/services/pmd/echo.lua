-- Default compression: offered, no context takeover.
local echo = { max_message = 1024 * 1024 }
function echo.onText(caller, text) caller:send(text) end
function echo.onBinary(caller, bytes) caller:sendBinary(bytes) end
echo.http = {
  ["POST /broadcast"] = function(req)
    return 200, tostring(moonws.broadcast("/echo", req.body))
  end,
}
return echo
