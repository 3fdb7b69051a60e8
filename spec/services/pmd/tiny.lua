-- The smallest window the RFC allows.
local s = { compression = { window_bits = 8 } }
function s.onText(caller, text) caller:send(text) end
function s.onBinary(caller, bytes) caller:sendBinary(bytes) end
return s
