-- Handlers that never end by themselves: the CPU budget must stop them.
local r = {}

function r.onText(caller, text)
  if text == "spin" then
    while true do end
  elseif text == "spin_pcall" then
    -- a script that swallows errors must still be stopped
    while true do pcall(function() while true do end end) end
  elseif text == "spin_coroutine" then
    -- hooks are per coroutine: the budget must reach this one too
    coroutine.resume(coroutine.create(function() while true do end end))
  elseif text == "spin_wrap" then
    coroutine.wrap(function() while true do end end)()
  elseif text == "spin_nested" then
    coroutine.wrap(function()
      coroutine.resume(coroutine.create(function() while true do end end))
      while true do end
    end)()
  elseif text == "gc" then
    -- finalizers would run outside every handler's budget: refused
    local ok, err = pcall(setmetatable, {}, { __gc = function() end })
    caller:send(tostring(ok) .. " " .. tostring(err))
  elseif text == "co_deep" then
    -- coroutines inside coroutines: the guard lists 64 at most
    local function nest(depth)
      if depth == 0 then return "bottom" end
      local ok, res = coroutine.resume(coroutine.create(nest), depth - 1)
      if not ok then error(res, 0) end
      return res
    end
    local ok64, r64 = pcall(nest, 64)
    local ok65, r65 = pcall(nest, 65)
    caller:send(tostring(ok64) .. " " .. tostring(r64) .. " | " .. tostring(ok65) .. " " .. tostring(r65))
  elseif text == "co_fine" then
    local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1); return b * 2 end)
    caller:send(tostring(co(1)) .. " " .. tostring(co(5)))
  else
    caller:send("fine " .. text)
  end
end

-- The process's dictionary: any worker answers GET /err.
local heard = moonws.dict("runaway")

function r.onError(caller, err)
  heard:set("err", tostring(err))
end

function r.onUpgrade(req)
  if req.query.spin then while true do end end
end

r.http = {
  ["GET /err"] = function() return 200, heard:get("err") or "" end,
  ["GET /spin"] = function() while true do end end,
  ["GET /timer"] = function()
    moonws.after(0, function() while true do end end)
    return 200, "armed"
  end,
}

return r
