-- For the tunables spec: an echo that can close, flood, and echo a body.
local t = { path = "/t" }

function t.onText(caller, text)
  if text == "bye" then
    caller:close(1000, "bye")
  elseif text == "flood" then
    for _ = 1, 200 do
      if not caller:send(("x"):rep(10000)) then break end
    end
  else
    caller:send(text)
  end
end

t.http = {
  ["POST /echo"] = function(req) return 200, req.body end,
}

return t
