-- Helpers for spec/auth_spec.lua: signs tokens, hashes passwords and makes
-- JWKs with moonws.jwt and moonws.crypto (no auth of its own).
local tools = {}

local function body(req) return assert(moonws.json.decode(req.body)) end

tools.http = {
  ["POST /sign"] = function(req)
    local r = body(req)
    return 200, moonws.jwt.sign(r.claims, r.opts)
  end,
  ["POST /verify"] = function(req)
    local r = body(req)
    local claims, why = moonws.jwt.verify(r.token, r.opts)
    if claims then return 200, { claims = claims, scopes = why } end
    return 200, { error = why }
  end,
  ["POST /hash"] = function(req)
    local r = body(req)
    return 200, moonws.crypto.password_hash(r.password, r.method)
  end,
  ["POST /check"] = function(req)
    local r = body(req)
    return 200, tostring(moonws.crypto.password_verify(r.password, r.hash))
  end,
  ["POST /jwk"] = function(req)
    local r = body(req)
    return 200, moonws.jwt.jwk(r.pem, r.kid)
  end,
  ["GET /crypto"] = function()
    local c = moonws.crypto
    return 200, {
      sha256 = c.hex(c.sha256("abc")),
      hmac = c.hex(c.hmac_sha256("key", "The quick brown fox jumps over the lazy dog")),
      b64 = c.base64url("\251\255\0"),
      back = c.hex(c.base64url_decode("-_8A")),
      bad = select(2, c.base64url_decode("a+b=")),
      random = #c.random(16),
      differ = c.random(16) ~= c.random(16),
    }
  end,
}

return tools
