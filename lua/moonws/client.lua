-- moonws.client: a synchronous WebSocket client for scripts and busted specs
-- (docs/reference.md, "The Lua client"). The work is done in C by moonws.core, with the same
-- handshake, framing and deflate code as the server; this file adds
-- retries and a small HTTP helper.
local core = require "moonws.core"

local client = {}

-- client.connect(url, opts) -> connection | nil, err [, http_status]
-- opts: protocols, headers, compression, timeout, auto_pong, max_message,
--       retry = { count = 3, interval = 0.1, backoff = 2 },
--       bind = "127.0.0.2" (the source address), rcvbuf = bytes (SO_RCVBUF)
-- Retries only when no HTTP answer came (nothing listening yet, timeouts);
-- a refusal with a status is final.
function client.connect(url, opts)
  opts = opts or {}
  local retry = opts.retry or {}
  local attempts = (retry.count or 0) + 1
  local interval = retry.interval or 0.1
  local c, err, status
  for i = 1, attempts do
    c, err, status = core.connect(url, opts)
    if c or status then break end
    if i < attempts then
      core.sleep(interval)
      interval = interval * (retry.backoff or 2)
    end
  end
  if not c then return nil, err, status end
  return c
end

-- client.tcp(host, port [, timeout [, tls [, opts]]]) -> a raw socket: send,
-- receive, receiveAll, shutdown, close. For feeding a server malformed bytes;
-- with a tls options table the bytes go through TLS. opts: bind = "127.0.0.2"
-- (the source address), rcvbuf = bytes (a small SO_RCVBUF: a slow reader
-- whose kernel does not absorb megabytes for it).
client.tcp = core.tcp

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
  local len = tonumber(h["content-length"])
  if len then rest = rest:sub(1, len) end
  return status, rest, h
end

return client
