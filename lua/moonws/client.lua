-- moonws.client: a synchronous WebSocket client for scripts and busted specs
-- (docs/reference.md, "The Lua client"). The work is done in C by moonws.core, with the same
-- handshake, framing and deflate code as the server; this file adds option
-- checking, credentials and cookies, connect-time retries, reconnection of
-- a dropped connection, and a small HTTP helper.
local core = require "moonws.core"

local client = {}

-- The option names each table accepts: anything else is an error that
-- names it (a misspelt `timout` would otherwise be silently ignored).
local KNOWN = {
  connect = { protocols = true, headers = true, compression = true, timeout = true,
              auto_pong = true, max_message = true, tls = true, retry = true, reconnect = true,
              on_reconnect = true, auth = true, cookies = true, bind = true, rcvbuf = true },
  tcp = { bind = true, rcvbuf = true },
  tls = { verify = true, ca = true, cert = true, key = true, servername = true },
  compression = { server_no_context_takeover = true, client_no_context_takeover = true,
                  server_max_window_bits = true, client_max_window_bits = true },
  retry = { count = true, interval = true, backoff = true },
  reconnect = { count = true, interval = true, backoff = true, max_interval = true },
  auth = { bearer = true, basic = true },
}

local function check_options(t, kind, where, level)
  if t == nil then return end
  if type(t) ~= "table" then
    error(("%s: `%s` must be a table"):format(where, kind), level + 1)
  end
  for k in pairs(t) do
    if not KNOWN[kind][k] then
      local names = {}
      for n in pairs(KNOWN[kind]) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown %s option `%s` (%s)"):format(where, kind == "connect" and "" or kind,
        tostring(k), table.concat(names, ", ")):gsub("unknown  option", "unknown option"), level + 1)
    end
  end
end

-- The options core.connect reads, from the user's: protocols as a list,
-- credentials and cookies as headers. The user's table is not changed.
local function core_options(opts)
  check_options(opts, "connect", "client.connect", 3)
  check_options(opts.tls, "tls", "client.connect", 3)
  if type(opts.compression) == "table" then check_options(opts.compression, "compression", "client.connect", 3) end
  check_options(opts.retry, "retry", "client.connect", 3)
  check_options(opts.reconnect, "reconnect", "client.connect", 3)
  check_options(opts.auth, "auth", "client.connect", 3)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if type(o.protocols) == "string" then o.protocols = { o.protocols } end
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local auth = opts.auth
  if auth then
    if auth.bearer and auth.basic then error("client.connect: auth: bearer or basic, not both", 3) end
    if auth.bearer then
      headers.Authorization = "Bearer " .. auth.bearer
    elseif type(auth.basic) == "table" then
      local user, pw = auth.basic.user or auth.basic[1], auth.basic.password or auth.basic[2]
      if type(user) ~= "string" or type(pw) ~= "string" then
        error("client.connect: auth.basic is { user, password }", 3)
      end
      headers.Authorization = "Basic " .. core.base64(user .. ":" .. pw)
    else
      error("client.connect: auth needs bearer = token or basic = { user, password }", 3)
    end
  end
  if opts.cookies then
    local list = {}
    for name, value in pairs(opts.cookies) do list[#list + 1] = name .. "=" .. value end
    table.sort(list)
    headers.Cookie = table.concat(list, "; ")
  end
  o.headers = headers
  return o
end

-- A connection that comes back by itself (opts.reconnect): when the server
-- drops it, or closes it with a code that means "gone for now" (1001 going
-- away, 1006, 1011-1014), the next send or receive connects again to the
-- same URL with the same options — count attempts, interval seconds apart,
-- multiplied by backoff each time up to max_interval — and carries on.
-- c.reconnects counts the reconnections; opts.on_reconnect(c) runs after
-- each (to subscribe again, say). Messages that arrived before the drop are
-- still delivered; a message sent into a connection that had already
-- dropped without the client knowing is lost.
local Reconnecting = {}

local GONE_FOR_NOW = { [1001] = true, [1006] = true, [1011] = true, [1012] = true, [1013] = true,
                       [1014] = true }

Reconnecting.__index = function(self, k)
  local m = Reconnecting[k]
  if m ~= nil then return m end
  local inner = rawget(self, "_c")
  local v = inner[k]
  if type(v) == "function" then
    return function(_, ...) return v(inner, ...) end
  end
  return v
end

function Reconnecting:_reconnect()
  local r = self._reconnect_opts
  local interval = r.interval or 0.1
  local err, status
  for i = 1, r.count or 5 do
    local c
    c, err, status = core.connect(self._url, self._core_opts)
    if c then
      self._c = c
      self.reconnects = self.reconnects + 1
      if self._on_reconnect then self._on_reconnect(self) end
      return true
    end
    if status then break end            -- an answer, and a refusal: final
    if i < (r.count or 5) then
      core.sleep(interval)
      interval = math.min(interval * (r.backoff or 2), r.max_interval or math.huge)
    end
  end
  return nil, err, status
end

-- Keeps what the old connection still holds for receive.
function Reconnecting:_drain()
  while true do
    local data, kind, code = self._c:receive(0)
    if not data then return end
    if kind ~= "close" then self._pending[#self._pending + 1] = { data, kind, code } end
  end
end

function Reconnecting:receive(timeout)
  if #self._pending > 0 then return table.unpack(table.remove(self._pending, 1), 1, 3) end
  local deadline = core.now() + (timeout or 5)
  while true do
    local data, kind, code = self._c:receive(math.max(0, deadline - core.now()))
    local dropped = not self._closing and
      ((data and kind == "close" and GONE_FOR_NOW[code]) or (not data and kind ~= "timeout"))
    if not dropped then return data, kind, code end
    local ok, err = self:_reconnect()
    if not ok then
      if data then return data, kind, code end
      return nil, err
    end
  end
end

local function sending(self, method, ...)
  if not self._closing and not self._c:pump() then
    self:_drain()
    local ok, err = self:_reconnect()
    if not ok then return nil, err end
  end
  local ok, err = self._c[method](self._c, ...)
  if not ok and not self._closing then
    self:_drain()
    if self:_reconnect() then return self._c[method](self._c, ...) end
  end
  return ok, err
end

function Reconnecting:send(...) return sending(self, "send", ...) end
function Reconnecting:sendBinary(...) return sending(self, "sendBinary", ...) end

function Reconnecting:close(...)
  self._closing = true
  return self._c:close(...)
end

-- client.connect(url, opts) -> connection | nil, err [, http_status]
-- opts: protocols (a list, or one name), headers, compression, timeout,
--       auto_pong, max_message, tls, auth = { bearer = token } |
--       { basic = { user, password } }, cookies = { name = value },
--       retry = { count = 3, interval = 0.1, backoff = 2 },
--       reconnect = { count = 5, interval = 0.1, backoff = 2, max_interval = 2 },
--       on_reconnect = function(c) end
--       bind = "127.0.0.2" (the source address), rcvbuf = bytes (SO_RCVBUF)
-- Retries only when no HTTP answer came (nothing listening yet, timeouts);
-- a refusal with a status is final, and its message has the server's body.
function client.connect(url, opts)
  opts = opts or {}
  local o = core_options(opts)
  local retry = opts.retry or {}
  local attempts = (retry.count or 0) + 1
  local interval = retry.interval or 0.1
  local c, err, status
  for i = 1, attempts do
    c, err, status = core.connect(url, o)
    if c or status then break end
    if i < attempts then
      core.sleep(interval)
      interval = interval * (retry.backoff or 2)
    end
  end
  if not c then return nil, err, status end
  if opts.reconnect then
    return setmetatable({ _c = c, _url = url, _core_opts = o, _reconnect_opts = opts.reconnect,
                          _on_reconnect = opts.on_reconnect, _pending = {}, reconnects = 0 },
                        Reconnecting)
  end
  return c
end

-- client.tcp(host, port [, timeout [, tls [, opts]]]) -> a raw socket: send,
-- receive, receiveAll, shutdown, close. For feeding a server malformed bytes;
-- with a tls options table the bytes go through TLS. opts: bind = "127.0.0.2"
-- (the source address), rcvbuf = bytes (a small SO_RCVBUF: a slow reader
-- whose kernel does not absorb megabytes for it).
function client.tcp(host, port, timeout, tls, opts)
  check_options(tls, "tls", "client.tcp", 2)
  check_options(opts, "tcp", "client.tcp", 2)
  return core.tcp(host, port, timeout, tls, opts)
end

local function parse_url(url)
  local scheme, host, port, target = url:match("^(%a+)://([^/:]+):?(%d*)(.*)$")
  if not scheme then error("bad URL " .. url, 3) end
  if target == "" then target = "/" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, host, port, target
end

-- client.http(method, url [, body [, headers [, timeout [, tls]]]])
--   -> status, body, headers (lower-case names) | nil, err
-- One request on its own connection; https:// verifies the server unless
-- tls = { verify = false } (tls takes the options of client.connect).
function client.http(method, url, body, headers, timeout, tls)
  check_options(tls, "tls", "client.http", 2)
  local scheme, host, port, target = parse_url(url)
  if scheme ~= "http" and scheme ~= "https" then return nil, "not an http(s) URL: " .. url end
  local s, err = core.tcp(host, port, timeout, scheme == "https" and (tls or {}) or nil)
  if not s then return nil, err end
  local req = { ("%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"):format(method, target, host, port) }
  for k, v in pairs(headers or {}) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
  if body then req[#req + 1] = "Content-Length: " .. #body .. "\r\n" end
  req[#req + 1] = "\r\n"
  req[#req + 1] = body or ""
  local ok, serr = s:send(table.concat(req), timeout)
  if not ok then s:close(); return nil, serr end
  local data, why = s:receiveAll(timeout or 5)
  s:close()
  local head, rest = data:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no complete response (" .. why .. ")" end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local h = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do h[name:lower()] = value end
  local len = tonumber(h["content-length"]) or #rest
  return status, rest:sub(1, len), h
end

return client
