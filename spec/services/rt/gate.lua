-- onUpgrade decides who gets in, and what caller.data starts with.
local gate = {}

function gate.onUpgrade(req)
  if req.query.token ~= "secret" then
    return false, 401, "token required"
  end
  if req.headers["x-role"] == "banned" then
    return false
  end
  req.data = { user = req.query.user or "anon", role = req.headers["x-role"] }
end

function gate.onOpen(caller)
  caller:send(caller.data.user .. "/" .. tostring(caller.data.role))
end

return gate
