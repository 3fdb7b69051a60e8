-- RS256 from a PEM public key.
local rs = { path = "/rs", auth = { jwt = { public_key_file = "rsa.pub" } } }
function rs.onOpen(caller) caller:send(caller.auth.subject) end
return rs
