-- A 512-byte window with context takeover, and a fast level.
local s = { compression = { window_bits = 9, context_takeover = true, level = 9 } }
function s.onText(caller, text) caller:send(text) end
function s.onBinary(caller, bytes) caller:sendBinary(bytes) end
return s
