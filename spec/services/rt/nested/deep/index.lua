return { onOpen = function(caller) caller:send("deep " .. caller.path) end }
