-- Driven by fuzz_hp.c: every entry point of moonfm.hp and moonfm.json
-- that reads text from outside (hyperparameters.json, SM_HP_* values) on
-- one input.  Each must return (a value, or nil and a message); raising is
-- a finding.
local hp = require "moonfm.hp"
local json = require "moonfm.json"

local specs = {
  { type = "int", min = 1, max = 100000 },
  { type = "int" },
  { type = "float", min = 0, min_exclusive = true },
  { type = "float", min = 0, max = 1, max_exclusive = true },
  { type = "bool" },
  { type = "string" },
  { type = "enum", values = { "warp", "bpr", "logistic" } },
  { type = "list", of = "int", min = 0 },
  { type = "list", of = "float" },
  { type = "list", of = "enum", values = { "a", "b" } },
}

return function(s, sel)
  local raw = json.members(s)
  if raw then
    hp.check_limits(raw)
    hp.split_reserved(raw)
    for _, v in pairs(raw) do
      for _, spec in ipairs(specs) do hp.coerce(v, spec) end
    end
  end
  json.decode(s)
  json.decode(s, { bigint = "text" })
  json.elements(s)
  hp.decode(s)
  hp.unquote(s)
  local spec = specs[sel % #specs + 1]
  local v = hp.coerce(s, spec)
  -- A value that coerced must coerce again from its own text.
  if v ~= nil and (spec.type == "int" or spec.type == "bool") then
    assert(hp.coerce(tostring(v), spec) == v, "coerce round trip")
  end
end
