-- Runs the Lua chunk that each message (or POST body) carries, with the
-- dictionaries `d` ("kv", undeclared size), `small` ("small", 4K) and
-- `tiny` ("tiny", 1K) in scope, and answers with its results, each shown
-- with its type: integer:3, float:3.0, "a string" (%q), true, nil, and a
-- table of strings as {a,b} (sorted). An error in the chunk is a handler
-- error: close 1011, or 500 from the endpoint.
local kv = { idle_timeout = 0 }

local d = moonws.dict("kv")
local small = moonws.dict("small", "4K")
local tiny = moonws.dict("tiny", 1024)

local function show(v)
  local t = type(v)
  if t == "number" then return math.type(v) .. ":" .. tostring(v) end
  if t == "string" then return ("%q"):format(v) end
  if t == "table" then
    local copy = {}
    for i, x in ipairs(v) do copy[i] = x end
    table.sort(copy)
    return "{" .. table.concat(copy, ",") .. "}"
  end
  return tostring(v)
end

local env = setmetatable({ d = d, small = small, tiny = tiny }, { __index = _ENV })

local function run(code)
  local f = assert(load(code, "=request", "t", env))
  local r = table.pack(f())
  local out = {}
  for i = 1, r.n do out[i] = show(r[i]) end
  return table.concat(out, " ")
end

function kv.onText(caller, text)
  caller:send(run(text))
end

kv.http = {
  ["POST /"] = function(req) return 200, run(req.body) end,
}

return kv
