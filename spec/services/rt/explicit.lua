return { path = "/custom/place", onOpen = function(caller) caller:send(caller.path) end }
