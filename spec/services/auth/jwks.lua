-- Keys from a JWK set, chosen by kid; read again on every reload.
local jwks = { path = "/jwks", auth = { jwt = { jwks_file = "jwks.json" } } }
function jwks.onOpen(caller) caller:send(caller.auth.subject) end
return jwks
