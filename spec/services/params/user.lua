-- Two parameters, and an upgrade that reads them.
local user = { path = "/u/:user/:device" }

function user.onUpgrade(req)
  if req.params.user == "nobody" then return false, 404, "no such user" end
end

function user.onOpen(caller)
  caller:send(caller.params.user .. "@" .. caller.params.device)
end

return user
