-- Context takeover on both sides.
local s = { compression = { context_takeover = true } }
function s.onText(caller, text) caller:send(text) end
function s.onBinary(caller, bytes) caller:sendBinary(bytes) end
return s
