-- Shows what the client sent: its Authorization and Cookie headers.
local creds = {}
function creds.onOpen(caller)
  caller:send({ authorization = caller.headers.authorization or "", cookie = caller.headers.cookie or "" })
end
return creds
