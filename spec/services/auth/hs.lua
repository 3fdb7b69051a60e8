-- HS256 from a secret file, with issuer, audience, leeway and a token in
-- the query; the principal in onUpgrade (req.auth) and the caller.
local hs = {
  path = "/hs",
  auth = {
    jwt = { secret_file = "secret.txt", issuer = "moonws-spec", audience = { "chat", "other" },
            leeway = 5 },
    query = "access_token",
  },
}

function hs.onUpgrade(req)
  req.data = { seen_in_upgrade = req.auth.subject }
end

function hs.onOpen(caller)
  local a = caller.auth
  caller:send({ kind = a.kind, subject = a.subject, scopes = a.scopes, iss = a.claims.iss,
                upgrade = caller.data.seen_in_upgrade })
end

hs.http = {
  ["GET /me"] = function(req) return 200, { subject = req.auth.subject, kind = req.auth.kind } end,
  ["POST /open"] = { auth = false, handler = function(req) return 200, tostring(req.auth) end },
  ["POST /admin"] = {
    auth = { jwt = { secret_file = "secret.txt" }, scopes = { "admin" } },
    handler = function(req) return 200, "admin " .. req.auth.subject end,
  },
}

return hs
