-- moonws.testing itself: the tools attack specs rely on.
local testing = require "moonws.testing"

describe("moonws.testing", function()
  it("runs a bystander that echoes through the server until stopped", function()
    local srv = testing.start{ dir = "examples", log_level = "info" }
    local b = testing.bystander(srv, "/echo")
    assert.is_true(b:wait(5, 5))
    local st = b:stop()
    assert.is_true(st.n >= 6)
    assert.equal(0, st.failures)
    assert.is_true(st.p50 > 0 and st.max >= st.p50)
    local rss, peak = srv:rss()
    assert.is_true(rss > 0 and peak >= rss)
    assert.is_true(srv:fds() >= 3)
    assert.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("counts the bystander's failures when the server goes away", function()
    local srv = testing.start{ dir = "examples", log_level = "info" }
    local b = testing.bystander(srv, "/echo")
    assert.equal(0, srv:stop())
    srv:cleanup()
    assert.is_true(b:wait(1, 10, true))
    local st = b:stop()
    assert.is_true(st.failures >= 1)
  end)
end)
