local s = {}
function s.onText(caller, text)
  caller:send(text
end
return s
