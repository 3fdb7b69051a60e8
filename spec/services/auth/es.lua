-- ES256 from a PEM public key.
local es = { path = "/es", auth = { jwt = { public_key_file = "ec.pub", algorithms = { "ES256" } } } }
function es.onOpen(caller) caller:send(caller.auth.subject) end
return es
