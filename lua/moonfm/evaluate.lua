-- Evaluation of any model (moonfm.evaluate): metric names, option
-- validation, and the call into moonfm.core.  Definitions and the tie rule
-- are in docs/evaluation.md.
--
--   local ev = require "moonfm.evaluate"
--   local r = ev.evaluate(model, test, { k = {5, 10, 20},
--     metrics = {"precision", "ndcg", "auc"}, exclude = train })
--   r["ndcg@10"], r.counts.skipped_users, r.per_user (with per_user = true)
local core = require "moonfm.core"

local M = {}

-- Metrics that take a cut-off (name@k) and those that do not.
M.topk_metrics = { precision = true, recall = true, ndcg = true, map = true,
                   hit_rate = true, coverage = true }
M.rank_metrics = { mrr = true, auc = true }

-- Defaults: what evaluate computes when opts leaves them out.
M.default_k = { 10 }
M.default_metrics = { "precision", "recall", "ndcg", "auc" }

local known_opts = { k = true, metrics = true, exclude = true,
                     include_seen = true, item_bias = true, per_user = true,
                     threads = true, block = true, unknown = true }

-- parse("ndcg@10") -> "ndcg", 10; parse("auc") -> "auc"; nil, msg if bad.
function M.parse(name)
  if type(name) ~= "string" then
    return nil, "metric names are strings, got " .. type(name)
  end
  local base, k = name:match("^([%a_]+)@(%d+)$")
  if base then
    if not M.topk_metrics[base] then
      if M.rank_metrics[base] then
        return nil, "metric '" .. name .. "' takes no cut-off; use '" .. base
          .. "'"
      end
      return nil, "unknown metric '" .. name .. "'"
    end
    k = math.tointeger(tonumber(k))
    if not k or k < 1 then
      return nil, "metric '" .. name .. "': the cut-off must be >= 1"
    end
    return base, k
  end
  if M.rank_metrics[name] then return name end
  if M.topk_metrics[name] then return name, nil end -- needs opts.k
  return nil, "unknown metric '" .. name .. "' (precision@K, recall@K, "
    .. "ndcg@K, map@K, hit_rate@K, coverage@K, mrr, auc)"
end

-- Every metric here is better when higher (for the metric lines of the
-- spec: MetricDefinitions and tuning objectives).
function M.higher_is_better(name)
  local base = M.parse(name)
  return base ~= nil
end

-- The list of "name@k" / "name" columns that opts ask for.
function M.columns(opts)
  opts = opts or {}
  local ks = opts.k
  if ks == nil then ks = M.default_k end
  if math.type(ks) == "integer" then ks = { ks } end
  if type(ks) ~= "table" then
    error("evaluate: option 'k' must be an integer or a list of integers", 3)
  end
  for i, k in ipairs(ks) do
    if math.type(k) ~= "integer" or k < 1 then
      error(string.format("evaluate: k[%d] must be an integer >= 1, got %s",
                          i, tostring(k)), 3)
    end
  end
  local metrics = opts.metrics or M.default_metrics
  if type(metrics) ~= "table" or #metrics == 0 then
    error("evaluate: option 'metrics' must be a non-empty list of names", 3)
  end
  local cols, seen = {}, {}
  local function add(c)
    if not seen[c] then
      seen[c] = true
      cols[#cols + 1] = c
    end
  end
  for _, name in ipairs(metrics) do
    local base, k = M.parse(name)
    if not base then error("evaluate: " .. k, 3) end
    if M.rank_metrics[base] then
      add(base)
    elseif k then
      add(base .. "@" .. k)
    else
      if #ks == 0 then
        error("evaluate: metric '" .. base .. "' needs a cut-off: give "
              .. "opts.k or write '" .. base .. "@10'", 3)
      end
      for _, kk in ipairs(ks) do add(base .. "@" .. kk) end
    end
  end
  if #cols > 64 then
    error("evaluate: at most 64 metric columns in one call, got " .. #cols, 3)
  end
  return cols
end

-- evaluate(model, test, opts) -> result
--   opts.k: integer or list (default {10}) for metrics named without @k
--   opts.metrics: names, with or without @k (default precision, recall,
--     ndcg, auc)
--   opts.exclude: interactions removed from the ranking (usually train)
--   opts.include_seen: keep them (default false)
--   opts.item_bias: rank with item biases (default true)
--   opts.per_user: also return per-user arrays (default false)
--   opts.threads, opts.block: worker threads (0 = all CPUs), users/block
--   opts.unknown: {users = n, items = n} unseen ids counted by the reader,
--     added to the counts so they are reported, never dropped silently
-- result: result["ndcg@10"] = mean, ...; result.counts = {users,
--   skipped_users, unknown_users, unknown_items, excluded_test_items,
--   test_items, ...}; result.per_user = {user = {...}, ["ndcg@10"] = {...}}
function M.evaluate(model, test, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("evaluate: opts must be a table", 2) end
  for key in pairs(opts) do
    if not known_opts[key] then
      error("evaluate: unknown option '" .. tostring(key) .. "'", 2)
    end
  end
  for _, b in ipairs { "include_seen", "item_bias", "per_user" } do
    if opts[b] ~= nil and type(opts[b]) ~= "boolean" then
      error("evaluate: option '" .. b .. "' must be a boolean", 2)
    end
  end
  for _, i in ipairs { "threads", "block" } do
    if opts[i] ~= nil and (math.type(opts[i]) ~= "integer" or opts[i] < 0) then
      error("evaluate: option '" .. i .. "' must be an integer >= 0", 2)
    end
  end
  if test == nil then error("evaluate: test interactions expected", 2) end
  local cols = M.columns(opts)
  local r, msg = core.evaluate(model, test, {
    metrics = cols, exclude = opts.exclude, include_seen = opts.include_seen,
    item_bias = opts.item_bias, per_user = opts.per_user,
    threads = opts.threads, block = opts.block,
  })
  if not r then return nil, msg end
  local u = opts.unknown
  if u ~= nil then
    if type(u) ~= "table" then
      error("evaluate: option 'unknown' must be {users = n, items = n}", 2)
    end
    r.counts.unseen_users = u.users or 0
    r.counts.unseen_items = u.items or 0
  end
  r.metrics = cols
  return r
end

return M
