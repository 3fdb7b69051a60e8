local s = {}

function s.onText(caller, text) end

function s.onMessage(caller, msg) end

return s
