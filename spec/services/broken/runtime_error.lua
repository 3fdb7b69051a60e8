local s = {}
local t = nil
t.x = 1
return s
