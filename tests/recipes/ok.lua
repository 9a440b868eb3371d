-- A recipe that uses the contract without a model: declares
-- hyperparameters and channels, emits metrics, writes its output, and
-- records what it saw in output/data/seen.txt for the spec to check.
local moonfm = require "moonfm"
local hp = moonfm.hyperparameters {
  epochs = { type = "int", default = 3, min = 1 },
  rate = { type = "float", default = 0.5 },
}
moonfm.declare_metrics {
  { split = "test", name = "precision@10", kind = "score" },
}
local ch = moonfm.channels { train = { required = true }, test = {} }
local env = moonfm.env()
moonfm.declare_output("out.txt")
local m = moonfm.metrics()
for e = 1, hp.epochs do
  m:epoch(e, "test", "precision@10", e / 10, "score")
end
m:final("test", "precision@10", hp.epochs / 10, "score")
local f = assert(io.open(env.model_dir .. "/out.txt", "w"))
f:write("epochs=", hp.epochs, "\n")
f:close()
local seen = {}
for _, k in ipairs { "SM_MODEL_DIR", "SM_CHANNELS", "SM_HPS", "SM_HOSTS",
                     "SM_CURRENT_HOST", "SM_HP_EPOCHS", "SM_HP_LEARNING-RATE",
                     "SM_CHANNEL_ITEM-FEATURES", "SM_USER_ARGS", "CURRENT_HOST",
                     "SM_NUM_CPUS", "SM_NUM_GPUS" } do
  seen[#seen + 1] = k .. "=" .. tostring(os.getenv(k))
end
seen[#seen + 1] = "train=" .. tostring(ch.train and ch.train.path)
seen[#seen + 1] = "test=" .. tostring(ch.test ~= nil)
seen[#seen + 1] = "rate_type=" .. math.type(hp.rate)
local g = assert(io.open(env.output_data_dir .. "/seen.txt", "w"))
g:write(table.concat(seen, "\n"), "\n")
g:close()
