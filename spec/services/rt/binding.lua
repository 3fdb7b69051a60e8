-- onMessage data binding: JSON text arrives as a Lua value.
local binding = {}

function binding.onMessage(caller, msg)
  if type(msg) == "table" then
    caller:send({ kind = "table", value = msg })
  else
    caller:send({ kind = type(msg), value = msg })
  end
end

function binding.onError(caller, err)
  moonws.shared.last_error = err
end

binding.http = {
  ["GET /last-error"] = function() return 200, moonws.shared.last_error or "" end,
}

return binding
