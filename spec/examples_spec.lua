-- The examples served by `make run`.
local testing = require "moonws.testing"
local cjson = require "cjson"

describe("examples", function()
  local srv
  lazy_setup(function() srv = testing.start{ dir = "examples", static = "examples/public" } end)
  lazy_teardown(function()
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  local function json(c)
    local data = assert(c:receive(3))
    return cjson.decode(data)
  end

  it("echo.lua echoes text and binary, compressed or not, up to 64 MiB", function()
    for _, compression in ipairs({ false, true }) do
      local c = assert(srv:connect("/echo", { compression = compression }))
      c:send("hello")
      assert.equal("hello", (c:receive(2)))
      local big = string.rep("0123456789abcdef", 4 * 1024 * 1024)   -- 64 MiB
      c:sendBinary(big)
      assert.equal(big, (c:receive(30)))
      c:close()
    end
  end)

  it("chat.lua: rooms, messages, broadcast and stats", function()
    local ann = assert(srv:connect("/chat?name=ann", { protocols = { "chat.v1" } }))
    assert.equal("chat.v1", ann.protocol)
    assert.same({ event = "welcome", name = "ann" }, json(ann))
    local bo = assert(srv:connect("/chat?name=bo"))
    assert.same({ event = "welcome", name = "bo" }, json(bo))
    ann:send({ event = "say", text = "too early" })
    assert.same({ event = "error", error = "join a room first" }, json(ann))
    ann:send({ event = "join", room = "lobby" })
    assert.same({ event = "joined", who = "ann", room = "lobby" }, json(ann))
    bo:send({ event = "join", room = "lobby" })
    assert.same({ event = "joined", who = "bo", room = "lobby" }, json(ann))
    assert.same({ event = "joined", who = "bo", room = "lobby" }, json(bo))
    bo:send({ event = "say", text = "hi ann" })
    assert.same({ event = "said", who = "bo", room = "lobby", text = "hi ann" }, json(ann))
    assert.same({ event = "said", who = "bo", room = "lobby", text = "hi ann" }, json(bo))
    bo:send({ event = "join", room = "kitchen" })
    assert.same({ event = "left", who = "bo", room = "lobby" }, json(ann))
    assert.same({ event = "joined", who = "bo", room = "kitchen" }, json(bo))
    bo:send({ event = "dance" })
    assert.same({ event = "error", error = "unknown event" }, json(bo))

    local status, body = srv:http("GET", "/chat/stats")
    assert.equal(200, status)
    local stats = cjson.decode(body)
    assert.equal(2, stats.connections)
    assert.same({ lobby = 1, kitchen = 1 }, stats.rooms)
    assert.equal(1, stats.messages)

    status, body = srv:http("POST", "/chat/broadcast", "to everyone")
    assert.equal(200, status)
    assert.equal(2, cjson.decode(body).delivered)
    assert.equal("to everyone", (ann:receive(2)))
    assert.equal("to everyone", (bo:receive(2)))

    bo:close()
    ann:close()
  end)

  it("chat.lua gives every visitor without a name a distinct one", function()
    local a = assert(srv:connect("/chat"))
    local b = assert(srv:connect("/chat?name="))
    local na, nb = json(a).name, json(b).name
    assert.matches("^guest%d+$", na)
    assert.matches("^guest%d+$", nb)
    assert.not_equal(na, nb)
    a:send({ event = "join", room = "lobby" })
    assert.same({ event = "joined", who = na, room = "lobby" }, json(a))
    a:close()
    b:close()
  end)

  it("ticker.lua greets and ticks every second", function()
    local c = assert(srv:connect("/ticker"))
    assert.equal("ticks arrive every second", json(c).hello)
    local tick = json(c)
    assert.is_number(tick.time)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", tick.clock)
    c:close()
  end)

  it("serves the chat page from examples/public", function()
    local status, body, headers = srv:http("GET", "/")
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", headers["content-type"])
    assert.matches("new WebSocket", body, 1, true)
  end)
end)
