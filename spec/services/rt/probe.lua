-- A service that does what its client asks, so specs can reach every
-- handler and every caller member. Text commands:
--   echo:<s>          send <s> back
--   info              send the caller's members as JSON
--   close[:code[:reason]]
--   ping:<data>       caller:ping(data)   pong:<data>  caller:pong(data)
--   sub:<t> unsub:<t> pub:<t>:<msg>
--   table             send a table (JSON)
--   badutf8           try to send invalid UTF-8 (a misuse: raises)
--   data:<k>=<v>      set caller.data[k]    getdata:<k>  send caller.data[k]
--   count             send moonws.count("/probe")
--   broadcast:<msg>   moonws.broadcast("/probe", msg)
--   conns             send the ids of moonws.connections("/probe")
--   error             raise an error
--   readonly          try to assign caller.id (raises)
--   notcaller         call caller.send with things that are not callers as
--                     self (each must raise); send back what each raised,
--                     then whether the method lookups still behave
--   buffered[:n]      send n bytes (default 1000), then caller.buffered before
--                     and after
-- (max_backpressure is raised so that buffered:12582912 is not a backpressure
-- close.)
local probe = { protocols = { "p1", "p2" }, idle_timeout = 0, max_backpressure = 16 * 1024 * 1024 }

-- What happened, in a dictionary of the process: GET /events answers the
-- same whichever worker takes the request (and they survive reloads).
local log = moonws.dict("probe-events")
local function record(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  log:set("e" .. log:incr("n", 1, 0), table.concat(parts, " "))
end

local function events()
  local list = moonws.json.array()
  for i = 1, log:get("n") or 0 do list[#list + 1] = log:get("e" .. i) end
  return list
end

local last_closed

function probe.onOpen(caller)
  record("open", caller.id)
end

function probe.onText(caller, text)
  local cmd, arg = text:match("^([%w]+):?(.*)$")
  if cmd == "echo" then
    caller:send(arg)
  elseif cmd == "info" then
    caller:send({
      id = caller.id, protocol = caller.protocol or moonws.json.null, secure = caller.secure,
      open = caller.open, remote = caller.remote, path = caller.path, query = caller.query,
      headers = caller.headers, buffered = caller.buffered, data_type = type(caller.data),
      tls = caller.tls or moonws.json.null,
      tostring = tostring(caller),
    })
  elseif cmd == "close" then
    local code, reason = arg:match("^(%d*):?(.*)$")
    caller:close(tonumber(code), reason ~= "" and reason or nil)
    local ok, err = caller:send("after close")
    record("send-after-close", tostring(ok), tostring(err), tostring(caller.open))
  elseif cmd == "ping" then
    caller:ping(arg)
  elseif cmd == "pong" then
    caller:pong(arg)
  elseif cmd == "sub" then
    caller:send("sub " .. tostring(caller:subscribe(arg)))
  elseif cmd == "unsub" then
    caller:send("unsub " .. tostring(caller:unsubscribe(arg)))
  elseif cmd == "pub" then
    local topic, msg = arg:match("^([^:]*):(.*)$")
    local n = moonws.publish(topic, msg)
    record("published", topic, n)
  elseif cmd == "table" then
    caller:send({ a = 1, list = { 1, 2, 3 }, nested = { ok = true } })
  elseif cmd == "badutf8" then
    caller:send("\xff\xfe")
  elseif cmd == "data" then
    local k, v = arg:match("^([^=]*)=(.*)$")
    caller.data[k] = v
  elseif cmd == "getdata" then
    caller:send(tostring(caller.data[arg]))
  elseif cmd == "count" then
    caller:send(tostring(moonws.count("/probe")))
  elseif cmd == "broadcast" then
    caller:send("delivered " .. moonws.broadcast("/probe", arg))
  elseif cmd == "conns" then
    local ids = {}
    for c in moonws.connections("/probe") do ids[#ids + 1] = c.id end
    table.sort(ids)
    caller:send(table.concat(ids, ","))
  elseif cmd == "error" then
    error("boom from onText")
  elseif cmd == "readonly" then
    caller.id = 5
  elseif cmd == "notcaller" then
    local timer = moonws.after(60, function() end)
    local errs = {}
    for _, v in ipairs({ moonws.json.null, {}, log, timer, "caller", 7 }) do
      local ok, err = pcall(caller.send, v, "x")
      errs[#errs + 1] = ok and "no error" or tostring(err)
    end
    timer:cancel()
    caller:send({
      errs = errs,
      same = rawequal(caller.send, caller.send) and rawequal(caller.sendBinary, caller.sendBinary),
      distinct = caller.send ~= caller.sendBinary,
      number_key = caller[1] == nil,
    })
  elseif cmd == "buffered" then
    -- a short message waits in the queue until this call returns; a long
    -- one goes to the kernel at once, and only what it leaves is queued
    local before = caller.buffered
    caller:sendBinary(string.rep("x", tonumber(arg) or 1000))
    caller:send(before .. " " .. caller.buffered)
  else
    caller:send("unknown command " .. text)
  end
end

function probe.onBinary(caller, bytes)
  caller:sendBinary(bytes)
end

function probe.onPong(caller, data)
  record("pong", caller.id, data)
end

function probe.onClose(caller, code, reason)
  record("close", caller.id, code, reason, tostring(caller.open), tostring(caller.data.k))
  last_closed = caller
end

function probe.onError(caller, err)
  record("error", caller.id, err)
end

probe.http = {
  ["GET /events"] = function() return 200, events() end,
  ["POST /reset"] = function()
    log:flush_all()
    return 204
  end,
  ["POST /send-to-closed"] = function()
    local ok, err = last_closed:send("too late")
    return 200, { ok = ok or false, err = err, open = last_closed.open,
                  data = last_closed.data.k or moonws.json.null }
  end,
  ["GET /echo-request"] = function(req)
    return 200, { method = req.method, path = req.path, query = req.query,
                  body = req.body, ua = req.headers["user-agent"] or moonws.json.null,
                  remote_ok = req.remote:match("^127%.0%.0%.1:%d+$") ~= nil }
  end,
  ["POST /echo-request"] = function(req)
    return 201, req.body, { ["X-Reply"] = "yes", ["Content-Type"] = "application/octet-stream" }
  end,
  ["POST /broadcast"] = function(req)
    return 200, { delivered = moonws.broadcast("/probe", req.body) }
  end,
  ["GET /tls"] = function(req) return 200, req.tls or {} end,
  ["GET /fail"] = function() error("endpoint failure") end,
  ["GET /notjson"] = function() return 200, { f = print } end,
  ["GET /badheaders"] = function() return 200, "x", { ["Bad\nName"] = "v" } end,
  ["GET /publish"] = function(req)
    return 200, { n = moonws.publish(req.query.topic, req.query.msg) }
  end,
}

return probe
