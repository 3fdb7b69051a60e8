-- A service that waits half a second for a client's close frame.
return {
  path = "/t/quick",
  close_timeout = 0.5,
  onText = function(caller, text)
    if text == "bye" then caller:close(1000, "bye") end
  end,
}
