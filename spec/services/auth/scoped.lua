-- A token must carry the scope chat:write (in `scope` or `scp`).
local scoped = {
  path = "/scoped",
  auth = { jwt = { secret_file = "secret.txt" }, scopes = { "chat:write" } },
}
function scoped.onOpen(caller) caller:send(table.concat(caller.auth.scopes, ",")) end
return scoped
