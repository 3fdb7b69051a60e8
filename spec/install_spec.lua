-- `make install` / `make uninstall`, and the README's walkthrough: a project
-- of one's own, outside this repository, tested with plain busted against
-- the installed moonws.
local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

local function tmpdir()
  local _, out = sh("mktemp -d")
  return (out:gsub("%s+$", ""))
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Every file under dir (relative paths, sorted).
local function files(dir)
  local _, out = sh(("cd %q && find . -type f | sort"):format(dir))
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line:sub(3) end
  return list
end

-- The README's Lua block whose first line starts with `first`, its list
-- indentation removed: the spec runs what the README shows.
local function readme_block(first)
  local readme = read("README.md")
  local indent, body = readme:match("\n( *)```lua\n%s*(" .. first:gsub("%p", "%%%0") .. ".-)\n *```\n")
  assert(body, "README.md has no lua block starting with " .. first)
  local lines = {}
  for line in (indent .. body .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = line:sub(1, #indent) == indent and line:sub(#indent + 1) or line
  end
  return table.concat(lines, "\n") .. "\n"
end

local installed = {
  "bin/moonws",
  "lib/lua/5.4/moonws/core.so",
  "lib/systemd/system/moonws.service",
  "share/doc/moonws/README.md",
  "share/doc/moonws/docs/architecture.md",
  "share/doc/moonws/docs/cluster.md",
  "share/doc/moonws/docs/operations.md",
  "share/doc/moonws/docs/reference.md",
  "share/doc/moonws/examples/chat.lua",
  "share/doc/moonws/examples/echo.lua",
  "share/doc/moonws/examples/public/index.html",
  "share/doc/moonws/examples/ticker.lua",
  "share/lua/5.4/moonws/bystander.lua",
  "share/lua/5.4/moonws/client.lua",
  "share/lua/5.4/moonws/testing.lua",
}

describe("make install", function()
  local prefix, project, stage
  before_each(function() prefix, project, stage = tmpdir(), tmpdir(), tmpdir() end)
  after_each(function() os.execute(("rm -rf %q %q %q"):format(prefix, project, stage)) end)

  it("installs into PREFIX, where a project elsewhere passes with plain busted; uninstall removes it all", function()
    local code, out = sh(("make --no-print-directory install PREFIX=%s"):format(prefix))
    assert.equal(0, code, out)
    assert.same(installed, files(prefix))
    local unit = read(prefix .. "/lib/systemd/system/moonws.service")
    assert.matches("\nExecStart=" .. prefix .. "/bin/moonws ", unit, 1, true)
    assert.matches("\nExecReload=/bin/kill -HUP $MAINPID\n", unit, 1, true)
    assert.matches("\nKillSignal=SIGTERM\n", unit, 1, true)

    -- The README's project, with its own files.
    os.execute(("mkdir -p %s/services %s/spec"):format(project, project))
    write(project .. "/services/room.lua", readme_block("-- services/room.lua"))
    write(project .. "/spec/room_spec.lua", readme_block("-- spec/room_spec.lua"))

    -- Installed into /usr/local, moonws is found through Debian's default
    -- search paths: lua5.4's package.path and package.cpath (compiled in)
    -- hold /usr/local/share/lua/5.4 and /usr/local/lib/lua/5.4, and PATH
    -- holds /usr/local/bin. A temporary PREFIX is on none of them, so the
    -- project runs with exactly those defaults, /usr/local replaced by the
    -- prefix — and nothing else: no MOONWS_BIN, nothing of this repository.
    local _, defaults = sh("env -i /usr/bin/lua5.4 -e 'print(package.path) print(package.cpath)'")
    local lpath, cpath = defaults:match("^(%S+)\n(%S+)\n$")
    assert.truthy(lpath and lpath:find("/usr/local/share/lua/5.4/?.lua", 1, true), defaults)
    assert.truthy(cpath:find("/usr/local/lib/lua/5.4/?.so", 1, true), defaults)
    local function here(s) return (s:gsub("/usr/local/", prefix .. "/")) end
    local env = ("env -i HOME=%s PATH=%s LUA_PATH=%q LUA_CPATH=%q"):format(
      project, here("/usr/local/bin:/usr/bin:/bin"), here(lpath), here(cpath))

    code, out = sh(("cd %s && %s moonws --check services"):format(project, env))
    assert.equal(0, code, out)
    assert.equal("ok room.lua -> /room\n", out)
    code, out = sh(("cd %s && %s busted spec/room_spec.lua"):format(project, env))
    assert.equal(0, code, out)
    assert.matches("1 success / 0 failures / 0 errors / 0 pending", out, 1, true)
    -- What it used was the installed one (find_bin reports it).
    code, out = sh(("cd %s && %s lua5.4 -e 'io.write(require(\"moonws.testing\").find_bin())'"):format(project, env))
    assert.equal(prefix .. "/bin/moonws", out)

    code, out = sh(("make --no-print-directory uninstall PREFIX=%s"):format(prefix))
    assert.equal(0, code, out)
    assert.same({}, files(prefix))
    for _, own in ipairs({ "share/lua/5.4/moonws", "lib/lua/5.4/moonws", "share/doc/moonws" }) do
      assert.is_nil(io.open(prefix .. "/" .. own), own .. " is still there")
    end
  end)

  it("stages with DESTDIR, writing PREFIX's paths into the unit", function()
    local code, out = sh(("make --no-print-directory install DESTDIR=%s PREFIX=/usr"):format(stage))
    assert.equal(0, code, out)
    local staged = {}
    for _, f in ipairs(installed) do staged[#staged + 1] = "usr/" .. f end
    assert.same(staged, files(stage))
    assert.matches("\nExecStart=/usr/bin/moonws ", read(stage .. "/usr/lib/systemd/system/moonws.service"), 1, true)
    code, out = sh(("make --no-print-directory uninstall DESTDIR=%s PREFIX=/usr"):format(stage))
    assert.equal(0, code, out)
    assert.same({}, files(stage))
  end)
end)
