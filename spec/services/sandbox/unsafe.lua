-- A service that turns the sandbox's unsafe part on for itself with
-- `sandbox = false`. Its top level runs in the safe environment (the field
-- is known only once the file has returned its table): it notes what it saw.
local seen_at_load = type(io)

-- The extras go into its os and package.loaded, raw: a trap on them runs
-- nowhere outside a handler.
local function trap() error("trap") end
setmetatable(os, { __newindex = trap })
setmetatable(package.loaded, { __newindex = trap })

local u = { sandbox = false }

function u.onText(caller, text)
  if text == "io" then
    local name = os.tmpname()
    local f = assert(io.open(name, "w"))
    f:write("written")
    f:close()
    f = assert(io.open(name))
    local back = f:read("a")
    f:close()
    os.remove(name)
    caller:send(table.concat({ back, type(io.popen), type(os.execute), type(os.rename),
      type(loadfile), type(dofile), tostring(require("io") == io), seen_at_load }, " "))
  elseif text == "cmodule" then
    setmetatable(package.loaded, nil)   -- require stores what it loads there
    caller:send(require("cjson").encode({ 1, 2 }))
  elseif text == "still" then
    -- what no flag turns on: these would break the server, not the host
    local up = 1
    local _, err = load(string.dump(function() return up end))
    caller:send(table.concat({ tostring((pcall(os.exit, 1))), type(debug.sethook),
      type(os.setlocale), type(package.loadlib), tostring((pcall(collectgarbage, "stop"))),
      tostring(err) }, " "))
  end
end

return u
