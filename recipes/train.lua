-- The default recipe: a recommender trained on a `train` channel of
-- (user, item[, weight]) rows, evaluated per epoch on `validation` and/or
-- `test`, with optional side features, checkpoints, early stopping, and a
-- popularity baseline for comparison.
--
--   moonfm run train.lua epochs=10 loss=bpr
--   moonfm run train.lua algorithm=als factors=64
--
-- Every hyperparameter arrives as a string from SageMaker; the schema below
-- types and checks them (docs/hyperparameters.md).
local moonfm = require "moonfm"
local checkpoint = require "moonfm.checkpoint"
local modelfile = require "moonfm.modelfile"
local progress = require "moonfm.progress"

local hp = moonfm.hyperparameters {
  algorithm = { type = "enum", values = { "fm", "als" }, default = "fm",
                help = "fm: the hybrid factorization model; als: implicit ALS" },
  loss = { type = "enum", values = { "warp", "bpr", "logistic", "warp-kos" },
           default = "warp" },
  -- Aliases: the names LightFM and implicit give the same settings, so
  -- their users' configurations carry over (docs/recipes.md).
  factors = { type = "int", default = 32, min = 1, max = 4096,
              aliases = { "no_components", "num_factors" } },
  epochs = { type = "int", default = 20, min = 1, max = 100000,
             aliases = { "iterations", "num_epochs" } },
  learning_rate = { type = "float", f32 = true, default = 0.05, min = 0, min_exclusive = true },
  schedule = { type = "enum", values = { "adagrad", "adadelta" }, default = "adagrad",
               aliases = { "learning_schedule" } },
  rho = { type = "float", f32 = true, default = 0.95, min = 0, max = 1, min_exclusive = true,
          max_exclusive = true },
  epsilon = { type = "float", f32 = true, default = 1e-6, min = 0, min_exclusive = true },
  user_alpha = { type = "float", f32 = true, default = 0.0, min = 0 },
  item_alpha = { type = "float", f32 = true, default = 0.0, min = 0 },
  max_sampled = { type = "int", default = 10, min = 1, max = 1000000 },
  kos_k = { type = "int", default = 5, min = 1, max = 4096 },
  kos_n = { type = "int", default = 10, min = 1, max = 4096 },
  logistic_threshold = { type = "float", f32 = true, default = 0.0 },
  score_item_bias = { type = "bool", default = true,
                      help = "false ranks without item biases (less popularity)" },
  use_features = { type = "bool", default = true,
                   help = "use the user_features / item_features channels when given" },
  identity_features = { type = "bool", default = true,
                        help = "keep one identity feature per user and item next to side features" },
  normalize_features = { type = "bool", default = true },
  regularization = { type = "float", f32 = true, default = 0.01, min = 0, min_exclusive = true },
  alpha = { type = "float", f32 = true, default = 1.0, min = 0 },
  solver = { type = "enum", values = { "cg", "cholesky" }, default = "cg" },
  cg_steps = { type = "int", default = 3, min = 1, max = 100 },
  k = { type = "int", default = 10, min = 1, max = 1000 },
  seed = { type = "int", default = 42, aliases = { "random_state" } },
  threads = { type = "int", default = 0, min = 0, max = 1024,
              aliases = { "num_threads" } },
  early_stopping_patience = { type = "int", default = 0, min = 0,
    help = "stop after this many epochs without a better validation precision@k; 0 = off" },
  checkpoint_every = { type = "int", default = 1, min = 0,
                       help = "epochs between checkpoints; 0 = no checkpoints" },
  checkpoint_keep = { type = "int", default = 2, min = 1 },
  checkpoint_seconds = { type = "float", default = 0, min = 0,
    help = "also checkpoint at the first epoch end this many seconds after the last; 0 = off" },
  baseline = { type = "bool", default = true,
               help = "also evaluate the popularity baseline" },
  bad_rows = { type = "enum", values = { "fail", "skip" }, default = "fail" },
  max_bad_rows = { type = "int", default = 1000, min = 0 },
  -- The layout of the train/validation/test files, for the few moonfm
  -- cannot tell by itself (docs/data.md: most need none of these).
  -- A tab also comes as itself (JSON "\t" in hyperparameters.json) or
  -- as the two characters \t typed in a console or a shell.
  delimiter = { type = "enum",
                values = { "auto", ",", "tab", "\t", "\\t", ";", "|", "space", "::" },
                default = "auto", help = "CSV delimiter; auto detects it" },
  header = { type = "enum", values = { "auto", "present", "absent" }, default = "auto" },
  user_column = { type = "string", default = "",
                  help = "a header name or a 1-based position; empty: the usual names, else 1" },
  item_column = { type = "string", default = "",
                  help = "a header name or a 1-based position; empty: the usual names, else 2" },
  weight_column = { type = "string", default = "",
                    help = "a header name, a 1-based position, or none (every row weighs 1)" },
}

local K = hp.k
local splits = { "validation", "test" }
local quality = { "precision@" .. K, "recall@" .. K, "ndcg@" .. K, "auc" }
do
  local d = { { split = "train", name = "fit_seconds", kind = "loss" },
              { split = "train", name = "loss", kind = "loss" } }
  for _, s in ipairs(splits) do
    for _, q in ipairs(quality) do d[#d + 1] = { split = s, name = q, kind = "score" } end
    d[#d + 1] = { split = s, name = "eval_seconds", kind = "loss" }
    d[#d + 1] = { split = s, name = "popularity_precision@" .. K, kind = "score" }
  end
  moonfm.declare_metrics(d)
end

local ch = moonfm.channels {
  train = { required = true }, validation = {}, test = {},
  user_features = {}, item_features = {},
}
local env = moonfm.env()
moonfm.declare_output(modelfile.FILE_NAME)
local log, metrics = moonfm.log, moonfm.metrics()

-- Data.  Test sets use the training id maps without growing them: unseen
-- ids are counted and reported, never silently dropped.
local function column(key, none_ok)
  local v = hp[key]
  if v == "" then return nil end
  if none_ok and v == "none" then return false end
  local pos = math.tointeger(tonumber(v))
  if tonumber(v) and not (pos and pos >= 1) then
    moonfm.errors.hyperparameter(string.format(
      "hyperparameter '%s' = %q: a position must be an integer >= 1", key, v),
      "Give a 1-based column number, or the column's header name.")
  end
  return pos or v
end
local read_opts = {
  bad_rows = hp.bad_rows, max_bad_rows = hp.max_bad_rows,
  delimiter = hp.delimiter ~= "auto"
              and (({ tab = "\t", ["\\t"] = "\t", space = " " })[hp.delimiter] or hp.delimiter)
              or nil,
  header = ({ present = true, absent = false })[hp.header],
  columns = { user = column("user_column"), item = column("item_column"),
              weight = column("weight_column", true) },
}
if next(read_opts.columns) == nil then read_opts.columns = nil end
local train, train_report = moonfm.read(ch.train, read_opts)
-- nil, "stopped": SIGTERM while reading (or waiting for a Pipe); there is
-- no model to save, so end here (the job exits 143, spec rule 75).
if not train then return end
if train:nnz() == 0 then
  moonfm.errors.data("channel 'train' has no interactions",
                     "Check the channel's files (CSV rows user,item[,weight]).")
end
-- Weights of 0 or less (Book-Crossing's and Goodreads' 0 = "not rated",
-- dislikes): ALS refuses negative ones, and fm's ranking losses take
-- only weights > 0 as positives, so such rows teach them nothing.
do
  local nonpos = math.min(train_report.nonpositive or 0, train:nnz())
  local neg = train_report.negative or 0
  local where = "channel 'train': "
  local fix = "Choose another weight column (weight_column=<position or "
    .. "name>), or weight_column=none to count every row as one positive."
  if hp.algorithm == "als" and neg > 0 then
    moonfm.errors.data(string.format("%s%d of %d interactions have a negative "
      .. "weight (duplicate rows summed), and ALS needs weights >= 0 (its "
      .. "confidence is 1 + alpha * weight)", where, neg, train:nnz()), fix)
  elseif hp.algorithm == "fm" and hp.loss ~= "logistic" and nonpos > 0 then
    if nonpos == train:nnz() then
      moonfm.errors.data(string.format("%sno interaction has a weight > 0 "
        .. "(%d interactions, every weight 0 or less), and loss=%s learns "
        .. "from weights > 0 only", where, nonpos, hp.loss), fix
        .. " loss=logistic takes weights <= logistic_threshold as negatives.")
    end
    log.warn("%s%d of %d interactions have a weight of 0 or less; loss=%s "
      .. "does not learn from them (they are never drawn as negatives "
      .. "either). If they are interactions too (e.g. implicit ratings of 0), "
      .. "pass weight_column=none", where, nonpos, train:nnz(), hp.loss)
  end
end
local user_features, item_features
if hp.use_features and hp.algorithm == "fm" then
  if ch.user_features then
    user_features = moonfm.read_features(ch.user_features, { ids = train:users() })
    if not user_features then return end -- stopped
  end
  if ch.item_features then
    item_features = moonfm.read_features(ch.item_features, { ids = train:items() })
    if not item_features then return end -- stopped
  end
  -- A feature channel that names no feature at all (empty, comments or a
  -- header only) is no side information: train without it, and say so.
  for side, f in pairs { user_features = user_features, item_features = item_features } do
    if f and select(2, f:shape()) == 0 then
      log.warn("channel '%s' names no features; training without it", side)
      if side == "user_features" then user_features = nil else item_features = nil end
    end
  end
end
local evals = {}
for _, s in ipairs(splits) do
  if ch[s] then
    local x = moonfm.read(ch[s], { users = train:users(), items = train:items(),
                                   grow_users = false, grow_items = false,
                                   bad_rows = hp.bad_rows,
                                   max_bad_rows = hp.max_bad_rows,
                                   delimiter = read_opts.delimiter,
                                   header = read_opts.header,
                                   columns = read_opts.columns })
    if not x then return end -- stopped
    -- An empty split (an empty file, or only ids unseen in training)
    -- would print NaN metrics every epoch: say it once, evaluate without.
    if x:nnz() == 0 then
      log.warn("channel '%s' has no interactions of known users and items; "
               .. "its metrics are skipped (check the file, or the split "
               .. "that made it)", s)
    else
      evals[#evals + 1] = { split = s, data = x }
    end
  end
end

-- The model.
local model_opts
if hp.algorithm == "fm" then
  model_opts = {
    algorithm = "fm", loss = hp.loss, factors = hp.factors,
    learning_rate = hp.learning_rate, schedule = hp.schedule, rho = hp.rho,
    epsilon = hp.epsilon, user_alpha = hp.user_alpha, item_alpha = hp.item_alpha,
    max_sampled = hp.max_sampled, kos_k = hp.kos_k, kos_n = hp.kos_n,
    logistic_threshold = hp.logistic_threshold, score_item_bias = hp.score_item_bias,
    seed = hp.seed, threads = hp.threads,
    user_features = user_features, item_features = item_features,
    user_identity = hp.identity_features, item_identity = hp.identity_features,
    normalize = hp.normalize_features,
  }
else
  model_opts = {
    algorithm = "als", factors = hp.factors, regularization = hp.regularization,
    alpha = hp.alpha, solver = hp.solver, cg_steps = hp.cg_steps,
    seed = hp.seed, threads = hp.threads,
  }
end
local model = moonfm.model.new(model_opts)
model:set_train(train)

-- Resume from the newest valid checkpoint (managed spot training).
-- checkpoint_seconds (rule 97's interval): with checkpoint_every=0, a big
-- model with short epochs is saved at most that often.
local ck, ck_err = checkpoint.new {
  dir = env.checkpoint_dir, keep = hp.checkpoint_keep, every = hp.checkpoint_every,
  interval = hp.checkpoint_seconds > 0 and hp.checkpoint_seconds or nil,
  enabled = (hp.checkpoint_every > 0 or hp.checkpoint_seconds > 0) and env.is_leader }
if not ck then
  moonfm.errors.config(ck_err .. " (the checkpoint folder: LocalPath in "
                       .. "checkpointconfig.json, or B/checkpoints)",
                       "Point LocalPath at a writable folder, or set "
                       .. "checkpoint_every=0 (and checkpoint_seconds=0) to keep no "
                       .. "checkpoints.")
end
local start = 0
do
  -- A checkpoint of another algorithm, factor count or loss than the
  -- hyperparameters ask was made by another job sharing the folder:
  -- resuming it would train (and save) a model the hyperparameters do not
  -- describe, or fail on its options.  Start afresh instead (rule 94).
  local function mismatch(h)
    local function differ(what, was, now)
      return string.format("it holds %s=%s, the hyperparameters ask %s", what,
                           tostring(was), tostring(now))
    end
    if h.kind ~= hp.algorithm then return differ("algorithm", h.kind, hp.algorithm) end
    if math.tointeger(h.factors) ~= hp.factors then
      return differ("factors", h.factors, hp.factors)
    end
    local loss = type(h.params) == "table" and h.params.loss
    if h.kind == "fm" and loss and loss ~= hp.loss then return differ("loss", loss, hp.loss) end
    return nil
  end
  local build
  if hp.algorithm == "fm" then
    build = function(h)
      local why = mismatch(h)
      if why then error(why, 0) end
      local core = require "moonfm.core"
      local o = {}
      for key, v in pairs(h.params or {}) do o[key] = v end
      o.epochs, o.epochs_trained = nil, nil
      o.user_features, o.item_features = user_features, item_features
      return core.fm_new(math.tointeger(h.n_users), math.tointeger(h.n_items), o)
    end
  end
  -- Several hosts: only the leader keeps checkpoints, and a leader that
  -- resumed alone would run other epochs than the other hosts (their
  -- collectives would no longer meet): start afresh.
  local m, info
  if require("moonfm.dist").active() then
    local latest = ck:latest()
    if latest then
      log.warn("multi-host job: not resuming from %s (every host would "
               .. "need it); training from epoch 1", latest.path)
    end
  else
    m, info = ck:resume { build = build }
  end
  local why = m and mismatch(info.header)
  if why then
    log.warn("checkpoint %s does not fit this job (%s); starting afresh",
             info.path, why)
    m:close()
    m = nil
  end
  if m then
    local nu, ni = train:users():size(), train:items():size()
    if info.users and info.users:size() == nu and info.items:size() == ni then
      model = moonfm.model.from_file(m, info, model_opts)
      model:set_train(train)
      start = model.epoch
      log.info("resumed from %s at epoch %d", info.path, start)
    else
      log.warn("checkpoint %s was made on other data (%s users x %s items); "
               .. "starting afresh", info.path, info.users and info.users:size() or "?",
               info.items and info.items:size() or "?")
      m:close()
    end
  end
end

-- Evaluates m on every evaluation split and prints the metric lines: per
-- epoch (epoch given), final (final_model), or not at all; `given` reuses
-- results computed earlier (the best epoch's, with early stopping).
-- Returns nil when a stop (SIGTERM) interrupted it.
local function evaluate(m, epoch, prefix, final_model, given)
  local out = {}
  for _, e in ipairs(evals) do
    local t0 = require("moonfm.core").clock()
    local r = given and given[e.split]
    if not r then
      local msg
      r, msg = moonfm.evaluate(m, e.data, { k = { K }, metrics = quality,
                                            exclude = train })
      if not r then
        if moonfm.stop_requested() then return nil end
        error(msg, 0)
      end
    end
    local secs = given and given[e.split].seconds or require("moonfm.core").clock() - t0
    r.seconds = secs
    out[e.split] = r
    for _, q in ipairs(quality) do
      local name = (prefix or "") .. q
      if not prefix or q == quality[1] then
        if epoch then metrics:epoch(epoch, e.split, name, r[q], "score")
        elseif final_model then metrics:final(e.split, name, r[q], "score") end
      end
    end
    if not prefix then
      if epoch then metrics:epoch(epoch, e.split, "eval_seconds", secs, "loss")
      else metrics:final(e.split, "eval_seconds", secs, "loss") end
    end
  end
  return out
end

-- Train, one epoch at a time: metrics, checkpoint, early stopping, stop flag.
local objective = evals[1] and evals[1].split
if hp.early_stopping_patience > 0 and not objective then
  log.warn("early_stopping_patience=%d needs a validation or test channel to "
           .. "compare epochs; without one every epoch is trained",
           hp.early_stopping_patience)
end
local best, best_epoch, since_best, best_res = -math.huge, 0, 0, nil
local p = progress.new { epochs = hp.epochs }
local function save(reason)
  local path = assert(model:save(env.model_dir, {
    metrics = metrics:summary(), hyperparameters = require("moonfm.hp").totable(hp) }))
  log.info("model saved to %s (%s)", path, reason)
end

local last_fit = 0
for epoch = start + 1, hp.epochs do
  local r, err = model:fit(train, { epochs = 1 })
  if not r then
    if moonfm.stop_requested() then
      log.info("stop requested during epoch %d: saving the model of epoch %d",
               epoch, epoch - 1)
      break
    end
    error(err, 0)
  end
  last_fit = r.seconds
  -- A NaN or infinite loss: the model is lost (the file writer would
  -- refuse it anyway); say so now, not after the remaining epochs.
  if r.loss and not (math.abs(r.loss) < math.huge) then
    local shown = r.loss ~= r.loss and "NaN" or tostring(r.loss)
    moonfm.errors.recipe(string.format("training diverged in epoch %d: the "
                         .. "training loss is %s", epoch, shown),
                         "Lower learning_rate (alpha for ALS), or check the "
                         .. "weights of the training data.")
  end
  if epoch == start + 1 and r.negatives == 0 and hp.algorithm == "fm"
      and hp.loss == "logistic" then
    log.warn("loss=logistic: no training value is <= logistic_threshold "
             .. "(%g), so every label is +1 and the model cannot rank; set "
             .. "logistic_threshold (e.g. 3.5 for 1-5 ratings) or use "
             .. "loss=warp or bpr", hp.logistic_threshold)
  end
  metrics:epoch(epoch, "train", "fit_seconds", r.seconds, "loss")
  if r.loss then metrics:epoch(epoch, "train", "loss", r.loss, "loss") end
  local res = evaluate(model:core(), epoch)
  if not res then
    log.info("stop requested during the evaluation of epoch %d: saving its "
             .. "model", epoch)
    break
  end
  p:epoch(epoch, train:nnz())
  metrics:progress(epoch, hp.epochs)
  if ck:due(epoch) then
    local ok, msg = ck:save(epoch, model:core(), model:header(),
                            { users = model.users, items = model.items })
    if ok then ck:prune() else log.warn("%s", msg) end
  end
  if objective and hp.early_stopping_patience > 0 then
    local v = res[objective]["precision@" .. K]
    if v > best then
      best, best_epoch, since_best, best_res = v, epoch, 0, res
      save("best epoch so far")
    else
      since_best = since_best + 1
      if since_best >= hp.early_stopping_patience then
        log.info("early stopping: no better %s precision@%d for %d epochs "
                 .. "(best %.4f at epoch %d)", objective, K, since_best, best, best_epoch)
        break
      end
    end
  end
  -- Every host agrees (several hosts get SIGTERM at different moments).
  if require("moonfm.dist").stop_agreed() then
    log.info("stop requested: saving the model of epoch %d", epoch)
    break
  end
end
p:finish()

-- Final metrics: of the saved model (the best epoch's with early stopping,
-- already saved and evaluated then).
if best_epoch == 0 then save(moonfm.stop_requested() and "stopped" or "final") end
metrics:final("train", "fit_seconds", last_fit, "loss")
evaluate(model:core(), nil, nil, true, best_res)
if hp.baseline and #evals > 0 then
  local pop <close> = moonfm.model.popularity(train)
  evaluate(pop, nil, "popularity_", true)
end
