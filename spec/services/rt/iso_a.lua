-- Services have their own globals, and their own copies of the standard
-- library and of moonws.json / moonws.log: what this one replaces, iso_b
-- does not see.
counter = "a"
function bump() counter = counter .. "a" end
return {
  http = {
    ["GET /"] = function() bump(); return 200, counter end,
    ["POST /clobber"] = function()
      string.upper = function() return "CLOBBERED" end
      table.concat = nil
      os.getenv = function() return "evil" end
      moonws.json.encode = function() return '"hijacked"' end
      moonws.log.warn = nil
      local hidden = { getmetatable(_G), getmetatable(""), getmetatable(moonws) }
      require("string").lower = function() return "clobbered too" end
      return 200, tostring(hidden[1]) .. " " .. tostring(hidden[2]) .. " " .. tostring(hidden[3])
    end,
  },
}
