-- Echoes every text and binary message back unchanged.
-- max_message is raised to 64 MiB so that large-message tests pass.
local echo = {
  max_message = 64 * 1024 * 1024,
  max_backpressure = 128 * 1024 * 1024,
}

function echo.onText(caller, text)
  caller:send(text)
end

function echo.onBinary(caller, bytes)
  caller:sendBinary(bytes)
end

return echo
