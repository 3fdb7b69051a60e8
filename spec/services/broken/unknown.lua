local s = {}
function s.onOpen(caller) end
function s.onFoo(caller) end
return s
