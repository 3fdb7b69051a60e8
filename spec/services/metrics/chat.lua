-- What the metrics spec counts: echoes, a failing and a runaway handler,
-- an endpoint that broadcasts.
local chat = { path = "/m/chat" }

function chat.onText(caller, text)
  if text == "boom" then
    error("boom")
  elseif text == "spin" then
    while true do end
  else
    caller:send(text)
  end
end

function chat.onBinary(caller, bytes)
  caller:sendBinary(bytes)
end

chat.http = {
  ["POST /broadcast"] = function(req)
    moonws.broadcast("/m/chat", req.body)
    return 200, "sent"
  end,
}

return chat
