-- Declared auth: JWT (HS, RS, ES, JWKS), Basic from a password file,
-- scopes, a token in the query, endpoints with per-route auth, load errors,
-- and moonws.jwt / moonws.crypto. Keys are made here with the openssl CLI;
-- tokens and password hashes by a helper server (spec/services/authtools).
local testing = require "moonws.testing"
local client = require "moonws.client"
local core = require "moonws.core"
local cjson = require "cjson"

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="
local SECRET = "0123456789abcdef0123456789abcdef-spec-secret"

local function sh(cmd)
  assert(os.execute("(" .. cmd .. ") 2>/dev/null"), cmd)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function b64url(s)
  local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local n = c and 4 or b and 3 or 2
    for k = 1, n do
      local idx = (v >> (18 - 6 * (k - 1))) & 63
      out[#out + 1] = abc:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

-- A raw upgrade: status, headers (lower-case names, repeated ones in a
-- list), body.
local function upgrade(srv, path, headers)
  local s = assert(srv:tcp())
  local extra = ""
  for k, v in pairs(headers or {}) do extra = extra .. k .. ": " .. v .. "\r\n" end
  assert(s:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " .. KEY .. "\r\n" .. extra .. "\r\n"))
  local data = ""
  local deadline = core.now() + 3
  while not data:find("\r\n\r\n", 1, true) and core.now() < deadline do
    local more = s:receive(1)
    if not more then break end
    data = data .. more
  end
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no response head: " .. data)
  local h = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name = name:lower()
    if h[name] then
      h[name] = type(h[name]) == "table" and h[name] or { h[name] }
      table.insert(h[name], value)
    else
      h[name] = value
    end
  end
  local len = tonumber(h["content-length"]) or 0
  while #body < len and core.now() < deadline do
    local more = s:receive(1)
    if not more then break end
    body = body .. more
  end
  s:close()
  return tonumber(head:match("^HTTP/1%.1 (%d+)")), h, body
end

local function bearer(token) return { Authorization = "Bearer " .. token } end

describe("declared auth", function()
  local tools, srv, dir
  local function tool(path, args)
    local status, body = tools:http("POST", "/tools" .. path, cjson.encode(args))
    assert.equal(200, status, body)
    return body
  end
  local function sign(claims, opts)
    return tool("/sign", { claims = claims, opts = opts or { secret = SECRET } })
  end
  local function now() return os.time() end
  local function good(extra)
    local c = { sub = "ann", iss = "moonws-spec", aud = "chat", exp = now() + 60, scope = "chat:write read" }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  lazy_setup(function()
    tools = testing.start{ dir = "spec/services/authtools" }
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p " .. dir .. " && cp spec/services/auth/*.lua " .. dir)
    sh(("cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem && " ..
        "openssl pkey -in rsa.pem -pubout -out rsa.pub && " ..
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem && " ..
        "openssl pkey -in ec.pem -pubout -out ec.pub && " ..
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.pem"):format(dir))
    write(dir .. "/secret.txt", SECRET .. "\n")
    local jwks = { keys = {
      cjson.decode(tool("/jwk", { pem = read(dir .. "/rsa.pub"), kid = "r1" })),
      cjson.decode(tool("/jwk", { pem = read(dir .. "/ec.pem"), kid = "e1" })),
    } }
    write(dir .. "/jwks.json", cjson.encode(jwks))
    -- ann: bcrypt from moonws.crypto; bob: sha-512 crypt from the openssl CLI
    local p = io.popen("openssl passwd -6 -salt spec0salt bobpw")
    local bob = p:read("l")
    p:close()
    write(dir .. "/users.htpasswd", "# spec users\nann:" .. tool("/hash", { password = "annpw", method = "bcrypt" }) ..
      "\nbob:" .. bob .. "\n")
    srv = testing.start{ dir = dir }
  end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
    assert.equal(0, tools:stop())
    tools:cleanup()
    os.execute("rm -rf " .. dir)
  end)

  describe("JWT", function()
    it("accepts a valid HS256 token and hands the principal to onUpgrade and the caller", function()
      local token = sign(good())
      local c = assert(srv:connect("/hs", { headers = bearer(token) }))
      local got = cjson.decode((c:receive(2)))
      assert.same({ kind = "jwt", subject = "ann", scopes = { "chat:write", "read" },
                    iss = "moonws-spec", upgrade = "ann" }, got)
      c:close()
    end)

    it("takes the token from the query parameter named by `query` (what browsers can do)", function()
      local c = assert(srv:connect("/hs?access_token=" .. sign(good({ sub = "qs" })) .. "&x=1"))
      assert.equal("qs", cjson.decode((c:receive(2))).subject)
      c:close()
    end)

    it("answers 401 with a Bearer challenge when there are no credentials", function()
      local status, h, body = upgrade(srv, "/hs")
      assert.equal(401, status)
      assert.equal('Bearer realm="moonws"', h["www-authenticate"])
      assert.matches("no credentials", body)
    end)

    local refusals = {
      { "an expired token", function() return sign(good({ exp = now() - 100 })) end, "token expired" },
      { "a token not yet valid", function() return sign(good({ nbf = now() + 100 })) end, "token not yet valid" },
      { "a token signed with another secret", function()
          return sign(good(), { secret = SECRET:reverse() }) end, "bad signature" },
      { "a token of the wrong issuer", function() return sign(good({ iss = "evil" })) end, "wrong issuer" },
      { "a token for another audience", function() return sign(good({ aud = "mail" })) end, "wrong audience" },
      { "a token without an audience", function() return sign(good({ aud = false })) end, "wrong audience" },
      { "an unsigned token (alg none)", function()
          return b64url('{"alg":"none","typ":"JWT"}') .. "." .. b64url(cjson.encode(good())) .. "." end,
        "malformed token" },
      { "alg none with a signature", function()
          return b64url('{"alg":"none"}') .. "." .. b64url(cjson.encode(good())) .. ".AAAA" end,
        "algorithm not accepted" },
      { "an HS384 token where HS256 is configured", function()
          return sign(good(), { secret = SECRET, alg = "HS384" }) end, "algorithm not allowed here" },
      { "a tampered payload", function()
          local t = sign(good())
          local h, _, s = t:match("^([^.]+)%.([^.]+)%.([^.]+)$")
          return h .. "." .. b64url(cjson.encode(good({ sub = "admin" }))) .. "." .. s end, "bad signature" },
      { "garbage", function() return "not-a-token" end, "malformed token" },
    }
    for _, r in ipairs(refusals) do
      it("refuses " .. r[1] .. " with 401 and logs why, never the token", function()
        local token = r[2]()
        local status, h, body = upgrade(srv, "/hs", bearer(token))
        assert.equal(401, status)
        assert.equal('Bearer realm="moonws", error="invalid_token", error_description="' .. r[3] .. '"',
          h["www-authenticate"])
        assert.matches(r[3], body, 1, true)
        assert(srv:wait_log("auth: GET /hs from 127.0.0.1:%d+ refused %(401%): " .. r[3]:gsub("%p", "%%%0")))
        assert.is_nil(srv:log():find(token, 1, true))
      end)
    end

    it("allows the configured leeway past exp", function()
      local c = assert(srv:connect("/hs", { headers = bearer(sign(good({ exp = now() - 2 }))) }))
      c:close()
    end)

    it("accepts RS256 from a public key, refuses HS256 made with that public key", function()
      local token = sign({ sub = "rsa-user" }, { key = read(dir .. "/rsa.pem"), alg = "RS256" })
      local c = assert(srv:connect("/rs", { headers = bearer(token) }))
      assert.equal("rsa-user", (c:receive(2)))
      c:close()
      -- the algorithm-confusion attack: the public key used as an HMAC secret
      local forged = sign({ sub = "mallory" }, { secret = read(dir .. "/rsa.pub"), alg = "HS256" })
      local status, h = upgrade(srv, "/rs", bearer(forged))
      assert.equal(401, status)
      assert.matches('error_description="algorithm not allowed here"', h["www-authenticate"])
    end)

    it("accepts ES256 (raw r||s signatures) and refuses another key's", function()
      local token = sign({ sub = "ec-user" }, { key = read(dir .. "/ec.pem") })
      assert.equal(3, select(2, token:gsub("%.", "")) + 1)
      local c = assert(srv:connect("/es", { headers = bearer(token) }))
      assert.equal("ec-user", (c:receive(2)))
      c:close()
      local other = sign({ sub = "ec-user" }, { key = read(dir .. "/other.pem") })
      assert.equal(401, (upgrade(srv, "/es", bearer(other))))
    end)

    it("chooses a JWK set's key by kid", function()
      for kid, pem in pairs({ r1 = "rsa.pem", e1 = "ec.pem" }) do
        local token = sign({ sub = kid }, { key = read(dir .. "/" .. pem), kid = kid })
        local c = assert(srv:connect("/jwks", { headers = bearer(token) }))
        assert.equal(kid, (c:receive(2)))
        c:close()
      end
      local token = sign({ sub = "x" }, { key = read(dir .. "/ec.pem"), kid = "nope" })
      local status, h = upgrade(srv, "/jwks", bearer(token))
      assert.equal(401, status)
      assert.matches('error_description="unknown key id"', h["www-authenticate"])
    end)

    it("answers 403 insufficient_scope when a required scope is missing", function()
      local status, h, body = upgrade(srv, "/scoped", bearer(sign({ sub = "a", scope = "read" })))
      assert.equal(403, status)
      assert.equal('Bearer realm="moonws", error="insufficient_scope", error_description="the token ' ..
        'lacks a required scope", scope="chat:write"', h["www-authenticate"])
      assert.matches("chat:write", body)
      local c = assert(srv:connect("/scoped", { headers = bearer(sign({ sub = "a", scope = "read chat:write" })) }))
      assert.equal("read,chat:write", (c:receive(2)))
      c:close()
      c = assert(srv:connect("/scoped", { headers = bearer(sign({ sub = "a", scp = { "chat:write" } })) }))
      assert.equal("chat:write", (c:receive(2)))
      c:close()
    end)
  end)

  describe("Basic", function()
    local function basic(user, pw)
      return { Authorization = "Basic " .. b64url(user .. ":" .. pw):gsub("-", "+"):gsub("_", "/") ..
        string.rep("=", (3 - #(user .. ":" .. pw) % 3) % 3) }
    end

    it("accepts users of a bcrypt and a sha-512 line", function()
      local c = assert(srv:connect("/basic", { headers = basic("ann", "annpw") }))
      assert.equal("basic ann", (c:receive(2)))
      c:close()
      c = assert(srv:connect("/basic", { headers = basic("bob", "bobpw") }))
      assert.equal("basic bob", (c:receive(2)))
      c:close()
    end)

    it("refuses a wrong password and an unknown user alike, with a Basic challenge", function()
      for _, up in ipairs({ { "ann", "bobpw" }, { "carl", "annpw" }, { "ann", "" } }) do
        local status, h, body = upgrade(srv, "/basic", basic(up[1], up[2]))
        assert.equal(401, status)
        assert.equal('Basic realm="chat", charset="UTF-8"', h["www-authenticate"])
        assert.matches("unknown user or wrong password", body)
      end
      assert.is_nil(srv:log():find("bobpw", 1, true))
      assert.equal(401, (upgrade(srv, "/basic", { Authorization = "Basic !!!!" })))
      assert.equal(401, (upgrade(srv, "/basic", bearer(sign(good())))))
    end)

    it("guards the service's endpoints too", function()
      assert.equal(401, (srv:http("GET", "/basic/me")))
      local status, body = srv:http("GET", "/basic/me", nil, basic("ann", "annpw"))
      assert.equal(200, status)
      assert.equal("ann", body)
    end)
  end)

  describe("HTTP endpoints", function()
    it("take the service's auth, and a route may override it", function()
      local status, body, h = srv:http("GET", "/hs/me")
      assert.equal(401, status)
      assert.equal('Bearer realm="moonws"', h["www-authenticate"])
      status, body = srv:http("GET", "/hs/me", nil, bearer(sign(good())))
      assert.equal(200, status)
      assert.same({ subject = "ann", kind = "jwt" }, cjson.decode(body))
      -- auth = false: open to all
      status, body = srv:http("POST", "/hs/open", "")
      assert.equal(200, status)
      assert.equal("nil", body)
      -- a route of its own: another rule (scope admin, no issuer needed)
      status = srv:http("POST", "/hs/admin", "", bearer(sign({ sub = "ann", scope = "read" })))
      assert.equal(403, status)
      status, body = srv:http("POST", "/hs/admin", "", bearer(sign({ sub = "root", scope = "admin" })))
      assert.equal(200, status)
      assert.equal("admin root", body)
    end)
  end)

  it("limits the refusals it logs, and goes on serving", function()
    local b = testing.bystander(srv, "/echo")
    for _ = 1, 60 do upgrade(srv, "/hs", bearer("x.y.z")) end
    assert(srv:wait_log("auth: over 20 refusals in a second: the rest of this second's are counted", 5, true))
    local logged = select(2, srv:log():gsub("refused %(401%): malformed token", ""))
    assert.is_true(logged < 60)
    local c = assert(srv:connect("/hs", { headers = bearer(sign(good())) }))
    c:close()
    local st = b:stop("auth refusals")
    assert.equal(0, st.failures)
  end)

  it("re-reads a JWK set when the service reloads", function()
    local token = sign({ sub = "r" }, { key = read(dir .. "/rsa.pem"), kid = "r1" })
    assert(srv:connect("/jwks", { headers = bearer(token) })):close()
    write(dir .. "/jwks.json", cjson.encode({ keys = {
      cjson.decode(tool("/jwk", { pem = read(dir .. "/ec.pem"), kid = "e1" })) } }))
    srv:signal("HUP")
    assert(srv:wait_log("reloaded jwks.lua at /jwks", 5, true))
    -- the RSA key is gone from the set: RS256 tokens are no longer accepted
    local status, h = upgrade(srv, "/jwks", bearer(token))
    assert.equal(401, status)
    assert.matches("algorithm not allowed here", h["www-authenticate"])
  end)
end)

describe("moonws.jwt and moonws.crypto", function()
  local tools
  lazy_setup(function() tools = testing.start{ dir = "spec/services/authtools" } end)
  lazy_teardown(function()
    assert.equal(0, tools:stop())
    tools:cleanup()
  end)
  local function post(path, args)
    local status, body = tools:http("POST", "/tools" .. path, cjson.encode(args))
    return status, body
  end

  it("sign and verify, with the reason when a token does not verify", function()
    local _, token = post("/sign", { claims = { sub = "x", n = 7 }, opts = { secret = SECRET } })
    local _, body = post("/verify", { token = token, opts = { secret = SECRET } })
    assert.same({ claims = { sub = "x", n = 7 }, scopes = {} }, cjson.decode(body))
    _, body = post("/verify", { token = token, opts = { secret = SECRET, issuer = "me" } })
    assert.same({ error = "wrong issuer" }, cjson.decode(body))
    _, body = post("/verify", { token = token .. "x", opts = { secret = SECRET } })
    assert.matches("signature", cjson.decode(body).error)
    -- misuse raises: a secret too short for HS256, HS with a public key, alg none
    assert.equal(500, (post("/verify", { token = token, opts = { secret = "short" } })))
    assert.equal(500, (post("/verify", { token = token, opts = { secret = SECRET, algorithms = { "none" } } })))
    assert.equal(500, (post("/sign", { claims = {}, opts = { secret = SECRET, alg = "RS256" } })))
  end)

  it("hash and check passwords, digest, HMAC, base64url and random bytes", function()
    local _, hash = post("/hash", { password = "pw", method = "yescrypt" })
    assert.matches("^%$y%$", hash)
    assert.equal("true", select(2, post("/check", { password = "pw", hash = hash })))
    assert.equal("false", select(2, post("/check", { password = "pW", hash = hash })))
    assert.equal(500, (post("/check", { password = "pw", hash = "$apr1$xx$yy" })))
    local _, body = tools:http("GET", "/tools/crypto")
    assert.same({
      sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      hmac = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
      b64 = "-_8A", back = "fbff00", bad = "not base64url (no padding, alphabet A-Z a-z 0-9 - _)",
      random = 16, differ = true,
    }, cjson.decode(body))
  end)
end)

describe("auth errors at load", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    sh("mkdir -p " .. dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  local cases = {
    { "missing.lua", 'local s = {\n  auth = {\n    jwt = {\n      public_key_file = "missing.pem",\n    },\n  },\n}\nreturn s\n',
      "missing.lua:4: `auth`: missing.pem: No such file or directory" },
    { "malformed.lua", 'return {\n  auth = { jwt = { public_key_file = "bad.pem" } },\n}\n',
      "malformed.lua:2: `auth`: bad.pem: not a PEM public key" },
    { "apr1.lua", 'return {\n  auth = {\n    basic = { file = "apr1.htpasswd" },\n  },\n}\n',
      "apr1.lua:3: `auth`: apr1.htpasswd: line 2: user eve: an MD5 hash, which is refused" },
    { "hswithkey.lua", 'return {\n  auth = { jwt = { jwks_file = "set.json",\n    algorithms = { "RS256", "HS256" } } },\n}\n',
      "hswithkey.lua:3: `auth`: HS256 with a public key is refused" },
    { "none.lua", 'return { auth = { jwt = { secret = "' .. SECRET .. '", algorithms = "none" } } }\n',
      "none.lua:1: `auth`: algorithm none is never accepted" },
    { "short.lua", 'return {\n  auth = { jwt = { secret = "tooshort" } },\n}\n',
      "short.lua:2: `auth`: the secret is 8 bytes; HS256 needs at least 32" },
    { "oct.lua", 'return {\n  auth = { jwt = { jwks = { keys = { { kty = "oct", k = "AAAA" } } } } },\n}\n',
      "oct.lua:2: `auth`: jwks: key 1: symmetric (oct) keys are refused" },
    { "unknown.lua", 'return {\n  auth = { jwt = { secret = "' .. SECRET .. '" }, scope = "x" },\n}\n',
      "unknown.lua:2: `auth`: unknown auth field `scope`" },
    { "huge.lua", 'return {\n  auth = { jwt = { secret_file = "huge.secret" } },\n}\n',
      "huge.lua:2: `auth`: huge.secret: larger than 1 MiB" },
    { "route.lua", 'local s = {}\ns.http = {\n  ["GET /x"] = { auth = { basic = {} }, handler = function() end },\n}\nreturn s\n',
      'route.lua:3: `auth`: `basic` needs `file`' },
  }

  it("names the service file and line, and --check says so", function()
    write(dir .. "/huge.secret", string.rep("s", 1024 * 1024 + 1))
    write(dir .. "/bad.pem", "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n")
    write(dir .. "/apr1.htpasswd", "ann:$2y$05$abcdefghijklmnopqrstuuJ7Tbl9KpnYc5h1H8iZcU6ZDFeEf/Ta\neve:$apr1$abc$defghijklmnopqrstuvwx\n")
    sh(("cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k.pem"):format(dir))
    local p = io.popen(("cd %s && openssl pkey -in k.pem -pubout"):format(dir))
    local pub = p:read("a")
    p:close()
    local t = testing.start{ dir = "spec/services/authtools" }
    local _, jwk = t:http("POST", "/tools/jwk", cjson.encode({ pem = pub }))
    assert.equal(0, t:stop())
    t:cleanup()
    write(dir .. "/set.json", '{"keys": [' .. jwk .. ']}')
    for _, c in ipairs(cases) do write(dir .. "/" .. c[1], c[2]) end
    write(dir .. "/fine.lua", 'return { auth = { jwt = { jwks_file = "set.json" } } }\n')
    local bin = os.getenv("MOONWS_BIN") or "build/moonws"
    local out, err = os.tmpname(), os.tmpname()
    local _, _, code = os.execute(("%s --check %s >%s 2>%s"):format(bin, dir, out, err))
    assert.equal(1, code)
    local errors = read(err)
    for _, c in ipairs(cases) do assert.matches(c[3], errors, 1, true) end
    assert.matches("ok fine.lua -> /fine", read(out), 1, true)
    os.remove(out)
    os.remove(err)
    -- served: the broken ones are not loaded, the good one is
    local srv = testing.start{ dir = dir }
    assert(srv:wait_log(cases[1][3] .. " (not loaded)", 2, true))
    assert.equal(401, select(3, srv:connect("/fine")))
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)
end)
