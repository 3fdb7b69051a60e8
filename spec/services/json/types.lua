-- JSON data binding: what Lua type each field of a message arrives as.
local types = {}

function types.onMessage(caller, msg)
  local out = {}
  for k, v in pairs(msg) do
    out[k] = math.type(v) or type(v)
    if math.type(v) == "integer" then out[k .. "_value"] = tostring(v) end
  end
  caller:send(out)
end

types.http = {
  -- the body decoded and encoded again
  ["POST /roundtrip"] = function(req)
    local v, err = moonws.json.decode(req.body)
    if err then return 400, err end
    return 200, moonws.json.encode(v)
  end,
  ["POST /encode"] = function(req)
    local ok, s = pcall(moonws.json.encode, load("return " .. req.body, "=body", "t", {
      array = moonws.json.array, null = moonws.json.null })())
    return 200, (ok and "ok " or "error ") .. s
  end,
  -- who is connected: an array, [] when nobody is
  ["GET /who"] = function()
    local ids = moonws.json.array()
    for c in moonws.connections("/types") do ids[#ids + 1] = c.id end
    return 200, ids
  end,
  ["GET /empty-object"] = function() return 200, {} end,
}

return types
