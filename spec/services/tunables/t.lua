-- For the tunables spec: an echo that can close, flood, and echo a body.
local t = { path = "/t" }

function t.onText(caller, text)
  if text == "bye" then
    caller:close(1000, "bye")
  elseif text == "flood" then
    -- 20 MB: more than the kernel takes for a client that does not read
    -- (long messages go to the kernel at once; only what it leaves queues)
    local chunk = ("x"):rep(10000)
    for _ = 1, 2000 do
      if not caller:send(chunk) then break end
    end
  else
    caller:send(text)
  end
end

t.http = {
  ["POST /echo"] = function(req) return 200, req.body end,
}

return t
