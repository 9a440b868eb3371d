-- Model and checkpoint files copied from anywhere (docs/model-file.md):
-- truncated, corrupted, empty, foreign.  Checkpoints that fail their checks
-- are skipped with a warning (training starts over); `moonfm inspect` and
-- `moonfm serve` refuse a bad model file with a clear message.
local e2e = require "support.e2e"
local runner = require "bad.runner"

-- A good model and checkpoint, trained once.
local good
local function model_bytes()
  if not good then
    local r = runner.run { hp = { epochs = "1" } }
    assert(r.code == 0, r.stderr)
    good = { model = e2e.read(r.base .. "/model/model.moonfm"),
             checkpoint = e2e.read(r.base .. "/checkpoints/checkpoint-000001.moonfm") }
  end
  return good
end

local function flip(s, at)
  local b = s:byte(at)
  return s:sub(1, at - 1) .. string.char(b ~ 0x5a) .. s:sub(at + 1)
end

-- Damages: name -> function(bytes) -> bytes
local damage = {
  truncated = function(s) return s:sub(1, #s // 2) end,
  ["flipped-byte"] = function(s) return flip(s, #s // 2) end,
  empty = function() return "" end,
  ["no-trailer"] = function(s) return s:sub(1, #s - 16) end,
  ["bad-magic"] = function(s) return "NOTMOONF" .. s:sub(9) end,
  ["future-version"] = function(s) return s:sub(1, 8) .. string.pack("<I4", 999) .. s:sub(13) end,
  ["huge-header-length"] = function(s)
    return s:sub(1, 16) .. string.pack("<I8", 1 << 60) .. s:sub(25)
  end,
  ["random-bytes"] = function(s)
    local t = {}
    for i = 1, #s do t[i] = string.char((i * 7919 + 13) % 256) end
    return table.concat(t)
  end,
}

local cases = {}
local names = {}
for k in pairs(damage) do names[#names + 1] = k end
table.sort(names)

for _, name in ipairs(names) do
  local f = damage[name]
  cases[#cases + 1] = {
    id = "checkpoint/" .. name, hp = { epochs = "1" },
    setup = function(b)
      e2e.write(b .. "/checkpoints/checkpoint-000007.moonfm", f(model_bytes().checkpoint))
    end,
    code = 0, stderr = "checkpoint: skipping",
  }
  cases[#cases + 1] = {
    id = "model/inspect-" .. name, args = { "inspect", "$B/model/model.moonfm" },
    setup = function(b) e2e.write(b .. "/model/model.moonfm", f(model_bytes().model)) end,
    code = 3, stderr = "model.moonfm",
  }
end

cases[#cases + 1] = {
  id = "model/serve-truncated", args = { "serve" },
  setup = function(b)
    e2e.write(b .. "/model/model.moonfm", damage.truncated(model_bytes().model))
  end,
  code = 1, stderr = "model.moonfm",
}
cases[#cases + 1] = {
  id = "model/serve-flipped-byte", args = { "serve" },
  setup = function(b)
    e2e.write(b .. "/model/model.moonfm", damage["flipped-byte"](model_bytes().model))
  end,
  code = 1, stderr = "model.moonfm",
}
cases[#cases + 1] = {
  id = "model/serve-no-model", args = { "serve" },
  setup = function(b) os.execute("mkdir -p " .. b .. "/model") end,
  code = 1, stderr = "no model file",
}
cases[#cases + 1] = {
  id = "model/serve-archive-not-unpacked", args = { "serve" },
  setup = function(b)
    os.execute("mkdir -p " .. b .. "/model && tar -czf " .. b
               .. "/model/model.tar.gz -C /etc hostname")
  end,
  code = 1, stderr = "tar -xzf model.tar.gz",
}
-- The server listens before it loads: keep it off the default port.
for _, c in ipairs(cases) do
  if c.args and c.args[1] == "serve" then
    c.env = { SAGEMAKER_BIND_TO_PORT = tostring(math.random(20000, 60000)) }
  end
end
return cases
