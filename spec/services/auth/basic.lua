-- Basic, from a password file; its endpoints are guarded too.
local basic = { path = "/basic", auth = { basic = { file = "users.htpasswd", realm = "chat" } } }
function basic.onOpen(caller)
  caller:send(caller.auth.kind .. " " .. caller.auth.subject)
end
basic.http = {
  ["GET /me"] = function(req) return 200, req.auth.subject end,
}
return basic
