counter = "b"
function bump() counter = counter .. "b" end
return {
  http = { ["GET /"] = function() bump(); return 200, counter .. (os.exit and "" or "") end },
  onText = function(caller, text)
    if text == "exit" then os.exit(1) end
    if text == "print" then print("printed", "from", "iso_b") end
    if text == "log" then moonws.log.warn("a warning", 42) end
    if text == "libs" then
      caller:send(table.concat({ ("abc"):upper(), string.upper("x"), ("ABC"):lower(),
        tostring(os.getenv("MOONWS_NO_SUCH_VAR")), moonws.json.encode({ 1 }),
        type(moonws.log.warn) }, " "))
      return
    end
    caller:send(text)
  end,
}
