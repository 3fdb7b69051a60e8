-- Every connection subscribes to "news" (default compression: no takeover).
local s = {}
function s.onOpen(caller) caller:subscribe("news") end
s.http = {
  ["POST /publish"] = function(req)
    return 200, tostring(moonws.publish("news", req.body))
  end,
}
return s
