local s = { compression = { threshold = 1000 } }
function s.onText(caller, text) caller:send(text) end
return s
