-- Services have their own globals.
counter = "a"
function bump() counter = counter .. "a" end
return {
  http = { ["GET /"] = function() bump(); return 200, counter end },
}
