-- Another service using the dictionary "kv": the two see the same entries.
local other = {}
local d = moonws.dict("kv")

other.http = {
  ["GET /"] = function(req) return 200, tostring(d:get(req.query.key)) end,
  ["POST /"] = function(req)
    d:set(req.query.key, req.body)
    return 200, "ok"
  end,
}

return other
