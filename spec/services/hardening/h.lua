-- HTTP endpoints for the attacks on the HTTP side.
local h = {}

local big = string.rep("B", 1000000)       -- the 1 MB answer

h.http = {
  ["GET /big"] = function() return 200, big end,
  -- n bytes of answer
  ["GET /size"] = function(req) return 200, string.rep("z", tonumber(req.query.n)) end,
  -- the order in which requests are answered, across connections
  ["GET /seq"] = function()
    moonws.shared.seq = (moonws.shared.seq or 0) + 1
    return 200, tostring(moonws.shared.seq)
  end,
  -- keeps the worker busy for 0.3 s, so that requests pile up meanwhile
  ["GET /spin"] = function()
    moonws.log.info("spinning")
    local t0 = os.clock()
    while os.clock() - t0 < 0.3 do end
    return 200, "spun"
  end,
  ["POST /body"] = function(req) return 200, tostring(#req.body) end,
  -- the server's wall clock, in seconds (clock_spec runs it fast)
  ["GET /time"] = function() return 200, tostring(os.time()) end,
}

return h
