-- Attacks on the Lua sandbox, one per text command, for spec/sandbox_spec.lua.
-- Each must cost the attacker's own call or connection only: the spec
-- checks the close code, what onError heard (GET /attack/last), and that
-- another client was served all along.
local a = {}

who = "attack"          -- a global the required module reads

local function spin() while true do end end

local attacks = {}

-- The CPU budget: every way to run Lua code stays under it.

function attacks.co_loaded_resume()
  local co = package.loaded.coroutine
  co.resume(co.create(spin))
end

function attacks.co_loaded_wrap()
  package.loaded.coroutine.wrap(spin)()
end

function attacks.co_require()
  local co = require "coroutine"
  co.resume(co.create(spin))
end

function attacks.co_close()
  -- coroutine.close runs a pending __close in the coroutine it closes
  local co = coroutine.create(function()
    local guard <close> = setmetatable({}, { __close = spin })
    coroutine.yield(guard)
  end)
  coroutine.resume(co)
  coroutine.close(co)
end

function attacks.sethook()
  while true do debug.sethook() end
end

function attacks.sethook_loaded()
  while true do package.loaded.debug.sethook() end
end

-- Bytecode: a chunk from string.dump, patched so that its GETUPVAL reads
-- far past the closure's upvalues (a Lua that runs it dies of SIGSEGV).
local function patched_chunk()
  local up = 1
  local d = string.dump(function() return up end)
  local i = assert(d:find("\9\0\0\0", 1, true))    -- GETUPVAL 0 0
  return d:sub(1, i + 1) .. "\255" .. d:sub(i + 3)  -- GETUPVAL 0 255
end

function attacks.bytecode(caller)
  local code = patched_chunk()
  local out = {}
  local f, err = load(code)
  if f then f() end
  out[1] = tostring(err)
  f, err = load(code, "=patched", "b")
  if f then f() end
  out[2] = tostring(err)
  local given = false
  f, err = load(function()
    if given then return nil end
    given = true
    return code
  end)
  if f then f() end
  out[3] = tostring(err)
  caller:send(table.concat(out, " | "))
end

-- What the environment holds.

function attacks.exit() package.loaded.os.exit(7) end
function attacks.exit_globals() load("return package")().loaded.os.exit(7) end
function attacks.open() io.open("/etc/hostname") end
function attacks.popen() package.loaded.io.popen("echo pwned") end
function attacks.loadlib() package.loadlib("libc.so.6", "*") end
function attacks.string_mt() debug.getmetatable("").__index.upper = spin end
function attacks.setlocale() os.setlocale("C") end

local function keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = tostring(name) end
  table.sort(k)
  return table.concat(k, " ")
end

function attacks.visible(caller)
  local loaded = package.loaded
  caller:send({
    os = keys(os), debug = keys(debug), package = keys(package), loaded = keys(loaded),
    io = type(io), dofile = type(dofile), loadfile = type(loadfile), warn = type(warn),
    string_mt = tostring(getmetatable("")),
    same = loaded.os == os and loaded.string == string and loaded.coroutine == coroutine
      and loaded.debug == debug and loaded.package == package and loaded._G == _G
      and loaded.moonws == moonws and require("os") == os and require("debug") == debug
      and load("return _G")() == _G and load("return package")() == package,
  })
end

function attacks.require(caller)
  local m = require "spec.modules.sandbox_mod"
  local again = require "spec.modules.sandbox_mod"
  local function err(name) return select(2, pcall(require, name)) end
  caller:send({
    m.hello(), m.loads, loads, m == again, package.loaded["spec.modules.sandbox_mod"] == m, m.io,
    err("cjson"), err("io"), err("no.such.module"), err("../etc/passwd"),
  })
end

function attacks.gc_stop() collectgarbage("stop") end

function attacks.gc_options(caller)
  local out = {}
  for _, opt in ipairs({ "stop", "restart", "incremental", "generational", "setpause",
                         "setstepmul", "collect", "count", "step", "isrunning" }) do
    out[#out + 1] = opt .. "=" .. tostring((pcall(collectgarbage, opt)))
  end
  pcall(collectgarbage, "generational")   -- (a server that took the options: as it was)
  pcall(collectgarbage, "restart")
  caller:send(table.concat(out, " "))
end

-- Memory: a global table that grows until it is stopped (or reaches
-- 512 MiB, where an unbounded server would answer); string.rep of 1 GiB.

function attacks.grow(caller)
  hoard = hoard or {}
  local kib = string.rep("x", 1024)
  while collectgarbage("count") < 512 * 1024 do
    hoard[#hoard + 1] = string.rep(kib, 64)
  end
  caller:send("grew to " .. math.floor(collectgarbage("count") / 1024) .. " MiB")
end

function attacks.rep(caller)
  local ok, s = pcall(string.rep, "x", 2^30)
  caller:send(tostring(ok) .. " " .. (ok and #s or tostring(s)))
end

function attacks.rep_raw(caller)
  caller:send(#string.rep("x", 2^30))
end

-- One call into C that backtracks for seconds: no instruction runs in it,
-- so the budget cannot stop it before it returns.
function attacks.backtrack(caller)
  local s = ("a"):rep(70000)
  caller:send(tostring(s:find(".-b")))
end

function attacks.hello(caller)
  caller:send("hello")
end

function a.onText(caller, text)
  local f = attacks[text]
  if not f then return caller:send("unknown attack " .. text) end
  f(caller)
end

-- What onError heard last, in the process's dictionary: any worker
-- answers GET /last.
local heard = moonws.dict("attack")

function a.onError(caller, err)
  hoard = nil           -- what grew past the cap is let go: the service serves on
  heard:set("last", tostring(err))
end

a.http = {
  ["GET /last"] = function() return 200, heard:get("last") or "" end,
}

return a
