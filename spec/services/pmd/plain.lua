local s = { compression = false }
function s.onText(caller, text) caller:send(text) end
return s
