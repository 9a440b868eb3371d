-- A model-free recipe with learning curves for sweep and report tests.
-- Per epoch e it reports test score@1 = plateau * (1 - 0.5^e) and
-- train loss = 1 - score, where plateau = 1 - |rate - 0.3| - (0.1 if
-- kind is "b"): deterministic, best at rate 0.3 and kind "a".
-- fail_at = n raises at epoch n; delay = s waits s seconds per epoch
-- (honouring the stop flag, so sweeps can stop it early).  probe = dir:
-- the run marks itself running there while it trains and writes how many
-- runs were marked when it started to output/data/concurrent.txt.
local moonfm = require "moonfm"
local core = require "moonfm.core"
local hp = moonfm.hyperparameters {
  epochs = { type = "int", default = 5, min = 1 },
  rate = { type = "float", default = 0.3 },
  kind = { type = "string", default = "a" },
  fail_at = { type = "int", default = 0 },
  delay = { type = "float", default = 0 },
  probe = { type = "string", default = "" },
}
moonfm.declare_metrics {
  { split = "test", name = "score@1", kind = "score" },
  { split = "train", name = "loss", kind = "loss" },
}
moonfm.channels { train = {}, test = {}, item_features = {} }
local env = moonfm.env()
moonfm.declare_output("model.txt")
local m = moonfm.metrics()
local plateau = 1 - math.abs(hp.rate - 0.3) - (hp.kind == "b" and 0.1 or 0)
local mark
if hp.probe ~= "" then
  mark = hp.probe .. "/" .. core.getpid() .. ".running"
  assert(io.open(mark, "w")):close()
  local n = 0
  for name in require("lfs").dir(hp.probe) do
    if name:match("%.running$") then n = n + 1 end
  end
  local c = assert(io.open(env.output_data_dir .. "/concurrent.txt", "w"))
  c:write(n, "\n")
  c:close()
end
local score
for e = 1, hp.epochs do
  if hp.fail_at == e then
    if mark then os.remove(mark) end
    error("diverged at epoch " .. e)
  end
  if hp.delay > 0 then core.sleep(hp.delay) end
  if moonfm.stop_requested() then break end
  score = plateau * (1 - 0.5 ^ e)
  m:epoch(e, "test", "score@1", score, "score")
  m:epoch(e, "train", "loss", 1 - score, "loss")
end
if score then
  m:final("test", "score@1", score, "score")
  m:final("train", "loss", 1 - score, "loss")
end
local f = assert(io.open(env.model_dir .. "/model.txt", "w"))
f:write(string.format("rate=%s kind=%s score=%s\n", hp.rate, hp.kind, score))
f:close()
if mark then os.remove(mark) end
