return { onText = function(caller, text) caller:send(text) end }
