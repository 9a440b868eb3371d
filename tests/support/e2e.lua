-- Helpers for end-to-end specs: fake /opt/ml trees and runs of the real
-- moonfm executable (MOONFM_EXE, set by ctest).
local lfs = require "lfs"

local M = {}

M.exe = os.getenv("MOONFM_EXE") or "build/moonfm"
M.source = os.getenv("MOONFM_SOURCE_DIR") or lfs.currentdir()
local tmp_root = os.getenv("MOONFM_TEST_TMP") or "/tmp"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

function M.write(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then os.execute("mkdir -p " .. q(dir)) end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.exists(path) return lfs.attributes(path) ~= nil end

local counter = 0
-- A new empty folder under the test scratch dir.
function M.tmpdir(tag)
  counter = counter + 1
  local d = string.format("%s/e2e-%s-%d-%d-%d", tmp_root, tag or "t",
                          os.time(), math.random(1e9), counter)
  os.execute("rm -rf " .. q(d) .. " && mkdir -p " .. q(d))
  return d
end

-- tree{config = {name = text}, files = {relpath = text}} -> base dir with
-- model/ output/ etc. NOT created (moonfm must create them, rule 12).
function M.tree(spec)
  spec = spec or {}
  local b = M.tmpdir("tree")
  os.execute("mkdir -p " .. q(b .. "/input/config") .. " " .. q(b .. "/input/data"))
  for name, text in pairs(spec.config or {}) do
    M.write(b .. "/input/config/" .. name, text)
  end
  for rel, text in pairs(spec.files or {}) do M.write(b .. "/" .. rel, text) end
  return b
end

-- run(args, {env = {K = V}, cwd = dir, stdin = text, prefix = "ulimit ...;"})
-- -> status, stdout, stderr.
function M.run(args, opts)
  opts = opts or {}
  local d = M.tmpdir("run")
  local parts = {}
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  local argv = {}
  for _, a in ipairs(args) do argv[#argv + 1] = q(a) end
  local cmd = string.format("%s cd %s && env %s %s %s > %s/out 2> %s/err < /dev/null",
    opts.prefix or "", q(opts.cwd or d), table.concat(parts, " "),
    q(opts.exe or M.exe), table.concat(argv, " "), q(d), q(d))
  local _, _, code = os.execute(cmd)
  return code, M.read(d .. "/out") or "", M.read(d .. "/err") or ""
end

-- The first line of the failure file of base b, or nil.
function M.failure(b)
  local s = M.read(b .. "/output/failure")
  return s and s:match("^[^\n]*"), s
end

function M.recipe(name) return M.source .. "/tests/recipes/" .. name end

return M
