-- Refuses every upgrade with a reason in the body.
local refuse = {}
function refuse.onUpgrade(req)
  return false, 403, "go away, " .. (req.query.who or "stranger") .. "\n"
end
return refuse
