-- onMessage data binding: JSON text arrives as a Lua value.
local binding = {}

function binding.onMessage(caller, msg)
  if type(msg) == "table" then
    caller:send({ kind = "table", value = msg })
  else
    caller:send({ kind = type(msg), value = msg })
  end
end

-- The process's dictionary: any worker answers GET /last-error.
local heard = moonws.dict("binding")

function binding.onError(caller, err)
  heard:set("last_error", tostring(err))
end

binding.http = {
  ["GET /last-error"] = function() return 200, heard:get("last_error") or "" end,
}

return binding
