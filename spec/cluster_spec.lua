-- Several nodes joined through Redis (--redis, docs/cluster.md): publish,
-- broadcast and moonws.send reach every node; a node subscribes only to
-- what it needs; another program publishes with redis-cli; Redis going
-- away and coming back; startup errors. Each test starts its own
-- redis-server on a free loopback port (no persistence, a temp folder) and
-- stops it at the end.
local testing = require "moonws.testing"
local core = require "moonws.core"
local cjson = require "cjson"

local DIR = "spec/services/cluster"

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

-- ---- redis-server and redis-cli ----

local Redis = {}
Redis.__index = Redis

-- Starts redis-server on port (or a free one: a port in use makes it exit,
-- and another is tried); extra: more arguments (--requirepass ...).
local function redis_start(port, extra)
  for _ = 1, 20 do
    local p = port or math.random(20000, 60000)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local argv = { "redis-server", "--port", tostring(p), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", dir, "--logfile", "" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local pid, fd = core.spawn(argv, { stderr = "/dev/null" })
    assert(pid, fd)
    local deadline = core.now() + 10
    while true do
      local line = core.readline(fd, deadline - core.now())
      if not line then break end
      if line:find("Ready to accept connections", 1, true) then
        return setmetatable({ pid = pid, fd = fd, port = p, dir = dir, extra = extra }, Redis)
      end
    end
    core.kill(pid, "KILL")
    core.wait(pid, 5)
    core.closefd(fd)
    os.execute("rm -rf " .. dir)
    if port then error("redis-server did not start on port " .. p) end
  end
  error("redis-server did not start")
end

function Redis:stop()
  if self.stopped then return end
  self.stopped = true
  core.kill(self.pid, "KILL")
  core.wait(self.pid, 5)
  core.closefd(self.fd)
  os.execute("rm -rf " .. self.dir)
end
Redis.__close = Redis.stop
Redis.__gc = Redis.stop

function Redis:url(userinfo)
  return ("redis://%s127.0.0.1:%d"):format(userinfo or "", self.port)
end

-- redis-cli with a shell command line's arguments (quoted by the caller).
function Redis:cli(args)
  local f = assert(io.popen(("redis-cli -p %d %s 2>&1"):format(self.port, args)))
  local out = f:read("a")
  f:close()
  return (out:gsub("%s+$", ""))
end

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Waits until cond() is true (polled every 20 ms), for at most timeout s.
local function eventually(cond, timeout)
  local deadline = core.now() + (timeout or 10)
  repeat
    if cond() then return true end
    core.sleep(0.02)
  until core.now() > deadline
  return cond()
end

-- How many nodes are subscribed to channel.
function Redis:numsub(channel)
  local out = self:cli("PUBSUB NUMSUB " .. q(channel))
  return tonumber(out:match("\n(%d+)$")) or -1
end

function Redis:channels()
  local set = {}
  for ch in self:cli("PUBSUB CHANNELS"):gmatch("[^\n]+") do set[ch] = true end
  return set
end

-- ---- nodes and clients ----

local function node(r, extra, opts)
  local args = { "--redis", r:url() }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local srv = testing.start{ dir = DIR, workers = (opts and opts.workers) or 2, args = args }
  return srv
end

-- A connection to /node: { c, id, worker }.
local function open(srv)
  local c = assert(srv:connect("/node"))
  local hello = assert(decode(assert(c:receive(5))))
  assert.equal("hello", hello.op)
  return { c = c, id = math.tointeger(hello.id), worker = hello.worker }
end

-- The next message of c whose op is op (others skipped); or, with op nil,
-- the next message that is not JSON with an op: (data, kind).
local function next_op(c, op, timeout)
  local deadline = core.now() + (timeout or 5)
  while core.now() < deadline do
    local msg, kind = c:receive(deadline - core.now())
    if not msg then return nil end
    local v = kind == "text" and decode(msg)
    if op and type(v) == "table" and v.op == op then return v end
    if not op and not (type(v) == "table" and v.op) then return msg, kind end
  end
end

local function ask(k, t)
  assert(k.c:send(cjson.encode(t)))
end

local function subscribe(k, topic)
  ask(k, { op = "subscribe", topic = topic })
  assert.is_truthy(next_op(k.c, "subscribed"))
end

-- Closes the connections, then stops each server: each must exit 0.
local function finish(conns, ...)
  for _, k in ipairs(conns) do k.c:close() end
  for _, srv in ipairs({ ... }) do assert.equal(0, srv:stop()) end
end

-- The node number in an id (its top 12 bits of 53).
local function node_of(id)
  return id >> 41
end

local function node_number(srv)
  local line = assert(srv:wait_log("cluster: joined Redis at .- as node %d+", 10))
  return tonumber(line:match("as node (%d+)"))
end

describe("a cluster through Redis", function()
  it("delivers a publish on node A to subscribers on A and B, once each, in order", function()
    local r <close> = redis_start()
    local a <close> = node(r)
    local b <close> = node(r)
    local na, nb = node_number(a), node_number(b)
    assert.are_not.equal(na, nb)
    local sa, sb = open(a), open(b)
    subscribe(sa, "news")
    subscribe(sb, "news")
    -- Both nodes, and only them, are subscribed to the topic's channel.
    assert.is_true(eventually(function() return r:numsub("moonws:topic:news") == 2 end))
    local pub = open(a)
    ask(pub, { op = "publish", topic = "news", text = "one" })
    ask(pub, { op = "publish", topic = "news", text = "two" })
    for _, k in ipairs({ sa, sb }) do
      assert.equal("one", (next_op(k.c)))
      assert.equal("two", (next_op(k.c)))
    end
    -- Nothing twice: the next message after a third is that third.
    ask(pub, { op = "publish", topic = "news", text = "three" })
    for _, k in ipairs({ sa, sb }) do assert.equal("three", (next_op(k.c))) end
    -- Binary stays binary.
    ask(pub, { op = "publish", topic = "news", text = "\0\1bin", binary = true })
    for _, k in ipairs({ sa, sb }) do
      local msg, kind = next_op(k.c)
      assert.equal("\0\1bin", msg)
      assert.equal("binary", kind)
    end
    -- A node is not subscribed to a topic nobody there wants: the channel
    -- goes when the last subscriber leaves.
    ask(sb, { op = "unsubscribe", topic = "news" })
    assert.is_truthy(next_op(sb.c, "unsubscribed"))
    assert.is_true(eventually(function() return r:numsub("moonws:topic:news") == 1 end))
    -- What the two nodes need, and nothing else.
    local want = { ["moonws:node:" .. na] = true, ["moonws:node:" .. nb] = true,
                   ["moonws:topic:news"] = true, ["moonws:svc:/node"] = true }
    assert.same(want, r:channels())
    finish({ sa, sb, pub }, a, b)
    -- Leaving is clean: both leases are gone at once.
    assert.equal("0", r:cli("EXISTS moonws:lease:" .. na .. " moonws:lease:" .. nb))
  end)

  it("broadcasts across nodes, and sends to an id on another node", function()
    local r <close> = redis_start()
    local a <close> = node(r)
    local b <close> = node(r)
    local na = node_number(a)
    node_number(b)
    local ka, kb = open(a), open(b)
    -- Ids carry their node.
    assert.equal(na, node_of(ka.id))
    assert.is_true(eventually(function() return r:numsub("moonws:svc:/node") == 2 end))
    ask(kb, { op = "broadcast", path = "/node", text = "to all" })
    assert.equal("to all", (next_op(ka.c)))
    assert.equal("to all", (next_op(kb.c)))
    -- An HTTP endpoint on B broadcasts to A's clients too.
    assert.equal(200, (b:http("POST", "/node/broadcast", "over http")))
    assert.equal("over http", (next_op(ka.c)))
    assert.equal("over http", (next_op(kb.c)))
    ask(kb, { op = "send", id = ka.id, text = "just you" })
    local sent = next_op(kb.c, "sent")
    assert.is_true(sent.ok)
    assert.equal("just you", (next_op(ka.c)))
    -- A connection that closed meanwhile: handed to the link (true), then
    -- dropped by its node, which counts it.
    local gone = open(a)
    gone.c:close()
    assert.is_true(eventually(function()
      ask(ka, { op = "count", path = "/node" })
      return next_op(ka.c, "count").here == 1
    end))
    ask(kb, { op = "send", id = gone.id, text = "too late" })
    assert.is_true(next_op(kb.c, "sent").ok)
    assert.is_truthy(a:wait_log("cluster: a message for connection " .. gone.id ..
                                ", not open here, dropped", 5, true))
    -- cluster_count: this node's count now and the others' (a second old).
    assert.is_true(eventually(function()
      ask(ka, { op = "count", path = "/node" })
      local v = next_op(ka.c, "count")
      return v.here == 1 and v.cluster == 2
    end, 10))
    finish({ ka, kb }, a, b)
  end)

  it("broadcasts to a concrete path under a parameter path across nodes", function()
    local r <close> = redis_start()
    local a <close> = node(r)
    local b <close> = node(r)
    node_number(a)
    node_number(b)
    local function room(srv, name)
      local c = assert(srv:connect("/rooms/" .. name))
      assert.equal("in " .. name, c:receive(5))
      return { c = c }
    end
    local la, lb, kb = room(a, "lobby"), room(b, "lobby"), room(b, "kitchen")
    -- Each node holds the concrete paths its connections were opened at.
    assert.is_true(eventually(function()
      return r:numsub("moonws:svc:/rooms/lobby") == 2 and r:numsub("moonws:svc:/rooms/kitchen") == 1
        and r:numsub("moonws:svc:/rooms/:room") == 2
    end))
    assert(la.c:send("hello lobby"))
    assert.equal("hello lobby", (lb.c:receive(5)))
    assert.equal("hello lobby", (la.c:receive(5)))
    assert(kb.c:send("hello kitchen"))
    -- The kitchen's message reached the kitchen only.
    assert.equal("hello kitchen", (kb.c:receive(5)))
    assert(lb.c:send("lobby again"))
    assert.equal("lobby again", (la.c:receive(5)))
    finish({ la, lb, kb }, a, b)
  end)

  it("delivers what redis-cli publishes: a bare payload, an envelope of origin 0", function()
    local r <close> = redis_start()
    local a <close> = node(r)
    local na = node_number(a)
    -- No connection yet: its own channel only.
    assert.same({ ["moonws:node:" .. na] = true }, r:channels())
    local k = open(a)
    subscribe(k, "news")
    assert.is_true(eventually(function() return r:numsub("moonws:topic:news") == 1 end))
    assert.equal("1", r:cli("PUBLISH moonws:topic:news hello"))
    assert.equal("hello", (next_op(k.c)))
    r:cli([[PUBLISH moonws:topic:news "$(printf 'MWS1 0 t\nfrom a backend')"]])
    assert.equal("from a backend", (next_op(k.c)))
    r:cli([[PUBLISH moonws:topic:news "$(printf 'MWS1 0 b\nraw')"]])
    local msg, kind = next_op(k.c)
    assert.equal("raw", msg)
    assert.equal("binary", kind)
    r:cli("PUBLISH moonws:svc:/node 'to the service'")
    assert.equal("to the service", (next_op(k.c)))
    -- A malformed envelope is dropped and logged, the next one delivered.
    r:cli([[PUBLISH moonws:topic:news "$(printf 'MWS1 99999 t\nbad')"]])
    r:cli("PUBLISH moonws:topic:news after")
    assert.equal("after", (next_op(k.c)))
    assert.is_truthy(a:wait_log("cluster: a message on moonws:topic:news dropped", 5, true))
    finish({ k }, a)
  end)

  it("keeps two deployments apart with --redis-prefix", function()
    local r <close> = redis_start()
    local a <close> = node(r, { "--redis-prefix", "blue:" })
    local b <close> = node(r, { "--redis-prefix", "green:" })
    node_number(a)
    node_number(b)
    local sa, sb = open(a), open(b)
    subscribe(sa, "t")
    subscribe(sb, "t")
    assert.is_true(eventually(function()
      return r:numsub("blue:topic:t") == 1 and r:numsub("green:topic:t") == 1
    end))
    local pa = open(a)
    ask(pa, { op = "publish", topic = "t", text = "blue only" })
    assert.equal("blue only", (next_op(sa.c)))
    r:cli("PUBLISH green:topic:t marker")
    -- green's subscriber gets the marker first: blue's message never came.
    assert.equal("marker", (next_op(sb.c)))
    finish({ sa, sb, pa }, a, b)
  end)

  it("goes on locally while Redis is gone, and joins again when it is back", function()
    local r = redis_start()
    local port = r.port
    local a <close> = node(r)
    local b <close> = node(r)
    node_number(a)
    node_number(b)
    local sa, sb = open(a), open(b)
    subscribe(sa, "t")
    subscribe(sb, "t")
    assert.is_true(eventually(function() return r:numsub("moonws:topic:t") == 2 end))
    r:stop()
    for _, s in ipairs({ a, b }) do
      assert.is_truthy(s:wait_log("cluster: lost Redis at 127.0.0.1:" .. port, 10, true))
    end
    -- Local delivery goes on; the copy for the other node is counted.
    local pa = open(a)
    ask(pa, { op = "publish", topic = "t", text = "alone" })
    assert.equal("alone", (next_op(sa.c)))
    -- A send to an id of the other node: the link is down.
    ask(pa, { op = "send", id = sb.id, text = "x" })
    local sent = next_op(pa.c, "sent")
    assert.is_false(sent.ok)
    assert.equal("unavailable", sent.err)

    local r2 <close> = redis_start(port)
    for _, s in ipairs({ a, b }) do
      assert.is_truthy(s:wait_log("cluster: Redis at 127.0.0.1:" .. port .. " is back", 10, true))
    end
    local back = a:wait_log("is back after", 1, true)
    assert.is_truthy(back:find("[1-9]%d* messages? could not be forwarded meanwhile"))
    -- Subscribed again: a publish crosses once more, once.
    assert.is_true(eventually(function() return r2:numsub("moonws:topic:t") == 2 end))
    ask(pa, { op = "publish", topic = "t", text = "together" })
    assert.equal("together", (next_op(sa.c)))
    assert.equal("together", (next_op(sb.c)))
    ask(pa, { op = "publish", topic = "t", text = "end" })
    assert.equal("end", (next_op(sb.c)))
    -- One line for the drop, one for the return.
    for _, s in ipairs({ a, b }) do
      assert.equal(1, s:count_log("cluster: lost Redis"))
      assert.equal(1, s:count_log(" is back after "))
    end
    finish({ sa, sb, pa }, a, b)
  end)

  it("runs alone when Redis is unreachable at startup, and joins later", function()
    local r = redis_start()
    local port = r.port
    r:stop()
    local a <close> = testing.start{ dir = DIR, workers = 2,
                                     args = { "--redis", "redis://127.0.0.1:" .. port } }
    assert.is_truthy(a:wait_log("cluster: Redis at 127.0.0.1:" .. port ..
                                " is unreachable", 5, true))
    local early = open(a)
    assert.equal(0, node_of(early.id))
    subscribe(early, "t")
    -- It serves alone meanwhile.
    local p = open(a)
    ask(p, { op = "publish", topic = "t", text = "local" })
    assert.equal("local", (next_op(early.c)))
    -- Another node that never reaches Redis stops cleanly too.
    local c = testing.start{ dir = DIR, workers = 2,
                             args = { "--redis", "redis://127.0.0.1:" .. port } }
    assert.is_truthy(c:wait_log("is unreachable", 5, true))
    assert.equal(0, c:stop())
    local r2 <close> = redis_start(port)
    local na = node_number(a)
    local b <close> = node(r2)
    node_number(b)
    assert.is_true(eventually(function() return r2:numsub("moonws:topic:t") == 1 end))
    local pb = open(b)
    ask(pb, { op = "publish", topic = "t", text = "from b" })
    assert.equal("from b", (next_op(early.c)))
    -- Ids made after the join carry the node's number.
    local late = open(a)
    assert.equal(na, node_of(late.id))
    finish({ early, p, pb, late }, a, b)
  end)

  it("refuses a bad URL, a bad prefix and a wrong password (exit 2)", function()
    local r <close> = redis_start(nil, { "--requirepass", "s3cret" })
    local bin = testing.find_bin()
    local function run(args)
      local log = os.tmpname()
      local argv = { bin, "-l", "127.0.0.1:0", "-w", "2" }
      for _, x in ipairs(args) do argv[#argv + 1] = x end
      argv[#argv + 1] = DIR
      local pid, fd = core.spawn(argv, { stderr = log })
      local code = core.wait(pid, 15)
      core.closefd(fd)
      local f = io.open(log)
      local err = f:read("a")
      f:close()
      os.remove(log)
      return code, err
    end
    local code, err = run({ "--redis", "http://127.0.0.1:1" })
    assert.equal(2, code)
    assert.matches("moonws: %-%-redis: the URL must start with redis://", err)
    code, err = run({ "--redis", r:url(), "--redis-prefix", "a b" })
    assert.equal(2, code)
    assert.matches("%-%-redis%-prefix", err)
    code, err = run({ "--redis", r:url(":wrong@") })
    assert.equal(2, code)
    assert.matches("moonws: %-%-redis: Redis at 127.0.0.1:%d+ refused the password", err)
    code, err = run({ "--redis", r:url() })
    assert.equal(2, code)
    assert.matches("wants a password", err)
    -- The right one joins.
    local a <close> = testing.start{ dir = DIR, workers = 2,
                                     args = { "--redis", r:url(":s3cret@") } }
    node_number(a)
    assert.equal(0, a:stop())
  end)

  it("--check with --redis checks the URL and connects to nothing", function()
    local bin = testing.find_bin()
    local function run(args)
      local _, _, code = os.execute(("%s --check %s %s >/dev/null 2>&1"):format(bin, args, DIR))
      return code
    end
    -- Nothing listens on port 1: --check does not try.
    assert.equal(0, run("--redis redis://127.0.0.1:1"))
    assert.equal(2, run("--redis redis://127.0.0.1:99999"))
  end)

  it("cluster_count is the node's count without --redis", function()
    local srv <close> = testing.start{ dir = DIR }
    local k = open(srv)
    ask(k, { op = "count", path = "/node" })
    local v = next_op(k.c, "count")
    assert.equal(1, v.here)
    assert.equal(1, v.cluster)
    finish({ k }, srv)
  end)
end)
