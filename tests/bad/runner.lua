-- Runs one training case of the bad-input corpus (README.md) with the real
-- executable and lists what is wrong with the outcome.
local e2e = require "support.e2e"
local cjson = require "cjson"
local q = e2e.quote

local M = {}

M.RC = '{"current_host":"algo-1","hosts":["algo-1"],"network_interface_name":"eth0"}'
M.IDC = '{"train":{"TrainingInputMode":"File","RecordWrapperType":"None"}}'
M.DATA = "user,item\nu1,i1\nu2,i2\nu1,i2\nu3,i1\n"

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

-- run(case) -> {code, first, failure, stdout, stderr, base}
function M.run(c)
  local hp = c.hp or { epochs = "1" }
  if type(hp) == "table" then hp = cjson.encode(hp) end
  local config = { ["hyperparameters.json"] = hp,
                   ["resourceconfig.json"] = M.RC,
                   ["inputdataconfig.json"] = M.IDC }
  for k, v in pairs(c.config or {}) do config[k] = v or nil end
  local files = { ["input/data/train/part-0.csv"] = M.DATA }
  for k, v in pairs(c.files or {}) do files[k] = v or nil end
  local b = e2e.tree { config = config, files = files }
  if c.setup then c.setup(b, e2e) end
  local env = { SAGEMAKER_BASE_DIR = b, SAGEMAKER_PROGRAM = "train.lua" }
  for k, v in pairs(c.env or {}) do env[k] = v end
  local args = {}
  for i, a in ipairs(c.args or { "train" }) do args[i] = a:gsub("%$B", b) end
  local code, out, err = e2e.run(args, { env = env, prefix = c.prefix })
  local first, whole = e2e.failure(b)
  return { code = code, first = first, failure = whole, stdout = out,
           stderr = err, base = b }
end

-- Files under dir whose name matches pattern.
local function find(dir, pattern)
  local out = {}
  for l in sh("find " .. q(dir) .. " -name " .. q(pattern) .. " 2>/dev/null")
             :gmatch("[^\n]+") do
    out[#out + 1] = l
  end
  return out
end

-- problems(case, result) -> list of strings (empty when all is as expected)
function M.problems(c, r)
  local p = {}
  local function add(fmt, ...) p[#p + 1] = string.format(fmt, ...) end
  if r.code ~= c.code then
    add("exit status %s, expected %s; stderr tail: %s", tostring(r.code),
        tostring(c.code), r.stderr:sub(-600))
  end
  if c.first then
    if not r.first then
      add("no failure file")
    elseif not r.first:find(c.first) then
      add("failure first line %q does not match %q", r.first, c.first)
    elseif not r.stderr:find(r.first, 1, true) then
      add("the failure's first line is not on stderr")
    end
  elseif r.first then
    add("unexpected failure file: %s", r.first)
  end
  if c.stderr and not r.stderr:find(c.stderr, 1, true) then
    add("stderr lacks %q", c.stderr)
  end
  local tmp = find(r.base, ".moonfm-tmp-*")
  if #tmp > 0 then add("temporary left behind: %s", tmp[1]) end
  if c.args then
    -- inspect / serve: they read the model folder and must not write to it.
  elseif r.code ~= 0 then
    if e2e.exists(r.base .. "/output/success") then add("success file written") end
    if e2e.exists(r.base .. "/model/model.moonfm") then add("model file written") end
    local npy = find(r.base .. "/model", "*.npy")
    if #npy > 0 then add("export written: %s", npy[1]) end
  else
    if not e2e.exists(r.base .. "/output/success") then add("no success file") end
    if not e2e.exists(r.base .. "/model/model.moonfm") then add("no model file") end
  end
  return p
end

return M
