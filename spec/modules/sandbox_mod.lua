-- A pure-Lua module for spec/sandbox_spec.lua. It runs in the environment
-- of the service that requires it: it sees that service's globals, and
-- counts its own loads in one of them.
local M = {}
loads = (loads or 0) + 1
M.loads = loads
M.who = who
M.io = type(io)
function M.hello() return "hello from " .. tostring(who) end
return M
