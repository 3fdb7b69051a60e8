-- Context takeover, and every message compressed, the empty one included.
local s = { compression = { context_takeover = true, threshold = 0 } }
function s.onText(caller, text) caller:send(text) end
function s.onBinary(caller, bytes) caller:sendBinary(bytes) end
s.http = {
  ["POST /broadcast"] = function(req)
    return 200, tostring(moonws.broadcast("/takeover0", req.body))
  end,
}
return s
