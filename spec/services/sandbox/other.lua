-- A second service requiring the module attack.lua requires: each gets its
-- own copy, loaded into its own environment.
who = "other"
return {
  http = {
    ["GET /mod"] = function()
      local m = require "spec.modules.sandbox_mod"
      return 200, m.hello() .. " " .. m.loads .. " " .. loads
    end,
  },
}
