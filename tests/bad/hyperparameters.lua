-- Hyperparameters (spec rules 28-42, docs/hyperparameters.md): every
-- coercion failure of the schema of recipes/train.lua, bounds, long values
-- and many entries.  Values arrive as strings.
local HPE = "^HyperparameterError: "

local function hp(t)
  t.epochs = t.epochs or "1"
  return t
end

local many = { epochs = "1" }
for i = 1, 100 do many["extra_" .. i] = tostring(i) end

return {
  { id = "hp/int-text", hp = hp { epochs = "abc" }, code = 2, first = HPE .. ".*epochs" },
  { id = "hp/int-fraction", hp = hp { epochs = "2.5" }, code = 2, first = HPE .. ".*epochs" },
  { id = "hp/int-empty", hp = hp { factors = "" }, code = 2, first = HPE .. ".*factors" },
  { id = "hp/int-below-min", hp = hp { epochs = "0" }, code = 2, first = HPE .. ".*epochs" },
  { id = "hp/int-above-max", hp = hp { factors = "4097" }, code = 2, first = HPE .. ".*factors" },
  { id = "hp/int-overflow", hp = hp { seed = "99999999999999999999999" }, code = 2, first = HPE .. ".*seed" },
  { id = "hp/int-hex", hp = hp { factors = "0x10" }, code = 2, first = HPE .. ".*factors" },
  { id = "hp/int-huge-exponent", hp = hp { epochs = "1e400" }, code = 2, first = HPE .. ".*epochs" },
  { id = "hp/float-text", hp = hp { learning_rate = "fast" }, code = 2, first = HPE .. ".*learning_rate" },
  { id = "hp/float-nan", hp = hp { learning_rate = "NaN" }, code = 2, first = HPE .. ".*learning_rate" },
  { id = "hp/float-inf", hp = hp { learning_rate = "inf" }, code = 2, first = HPE .. ".*learning_rate" },
  { id = "hp/float-exclusive-min", hp = hp { learning_rate = "0" }, code = 2, first = HPE .. ".*learning_rate" },
  { id = "hp/float-exclusive-max", hp = hp { rho = "1" }, code = 2, first = HPE .. ".*rho" },
  { id = "hp/float-negative", hp = hp { user_alpha = "-0.5" }, code = 2, first = HPE .. ".*user_alpha" },
  { id = "hp/bool-maybe", hp = hp { baseline = "maybe" }, code = 2, first = HPE .. ".*baseline" },
  { id = "hp/bool-number", hp = hp { baseline = "2" }, code = 2, first = HPE .. ".*baseline" },
  { id = "hp/enum-unknown", hp = hp { algorithm = "svd" }, code = 2, first = HPE .. ".*algorithm" },
  { id = "hp/enum-nul-byte", hp = hp { loss = "warp\0" }, code = 2, first = HPE .. ".*loss" },
  { id = "hp/list-for-int", hp = hp { factors = "[1, 2]" }, code = 2, first = HPE .. ".*factors" },
  { id = "hp/object-for-float", hp = '{"epochs": "1", "learning_rate": {"v": 1}}',
    code = 2, first = HPE .. ".*learning_rate" },
  { id = "hp/several-bad-at-once", hp = hp { epochs = "x", factors = "y" },
    code = 2, first = HPE, stderr = "factors" },
  { id = "hp/2500-char-value", hp = hp { loss = ("w"):rep(2500) }, code = 2, first = HPE .. ".*loss" },
  { id = "hp/2501-char-number", hp = hp { factors = ("9"):rep(2501) }, code = 2, first = HPE .. ".*factors" },
  { id = "hp/300-char-key", hp = hp { [("k"):rep(300)] = "1" },
    code = 0, stderr = "SageMaker accepts at most 256" },
  { id = "hp/101-entries", hp = many, code = 0, stderr = "101 hyperparameters given" },
  { id = "hp/invalid-utf8-value", hp = '{"epochs": "1", "loss": "w\255\254rp"}',
    code = 2, first = HPE .. ".*loss" },
  -- The kernels compute in 32-bit floats (hp.lua F32_MAX, F32_MIN).
  { id = "hp/float32-underflow", hp = hp { learning_rate = "1e-50" }, code = 2,
    first = HPE .. ".*learning_rate.*32%-bit float" },
  { id = "hp/float32-overflow", hp = hp { item_alpha = "1e39" }, code = 2,
    first = HPE .. ".*item_alpha.*32%-bit float" },
  { id = "hp/float32-overflow-als", hp = hp { algorithm = "als", alpha = "1e39" },
    code = 2, first = HPE .. ".*alpha.*32%-bit float" },
  { id = "hp/json-number-tolerated", hp = '{"epochs": 1, "factors": 8}', code = 0 },
  { id = "hp/unknown-key-tolerated", hp = hp { epoch = "3" }, code = 0,
    stderr = "epoch" },
}
