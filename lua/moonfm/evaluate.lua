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
                     threads = true, block = true, unknown = true,
                     distributed = true }

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

-- ---- several hosts (docs/multi-host.md) ----------------------------------
-- In a multi-host job every rank holds the same model and the same test
-- data; each evaluates its block of test users and the results are
-- combined so that every rank gets what one host evaluating everything
-- would: means from sums and counts (one allreduce), coverage@k from the
-- union of the recommended items (each item's best rank, reduced with the
-- minimum), counts summed, per-user arrays gathered in user order.  Every
-- rank must call evaluate with the same arguments (it is collective).

local CHUNK = 4096

local function pack_doubles(t)
  local parts = {}
  for i = 1, #t, CHUNK do
    local j = math.min(#t, i + CHUNK - 1)
    parts[#parts + 1] = string.pack("<" .. string.rep("d", j - i + 1),
                                    table.unpack(t, i, j))
  end
  return table.concat(parts)
end

-- Appends n doubles of s from byte pos to list; returns the next pos.
local function unpack_doubles(s, pos, n, list)
  for i = 1, n, CHUNK do
    local m = math.min(n, i + CHUNK - 1) - i + 1
    local vals = { string.unpack("<" .. string.rep("d", m), s, pos) }
    pos = vals[m + 1]
    for q = 1, m do list[#list + 1] = vals[q] end
  end
  return pos
end

local count_keys = { "users", "skipped_users", "unknown_users",
  "unknown_user_items", "unknown_items", "excluded_test_items",
  "test_items" }

-- The distribution module when this evaluation is to be split over the
-- ranks, else nil (one host, opts.distributed == false, a test table, or
-- a factorization model whose ranks are between two averagings).
local function split_over_ranks(model, test, opts)
  if opts.distributed == false then return nil end
  local dist = require "moonfm.dist"
  if not dist.active() or type(test) ~= "userdata" then return nil end
  if not dist.in_sync(model) then return nil end
  return dist
end

local function evaluate_split(dist, model, test, cols, copts)
  local rows = test:shape()
  local lo, hi = core.dist_block(rows, dist.rank(), dist.size())
  local part <close> = test:slice_rows(lo + 1, hi)
  local want_pu = copts.per_user
  local cov, kcov = {}, 0
  for _, name in ipairs(cols) do
    local k = math.tointeger(tonumber(name:match("^coverage@(%d+)$")))
    if k then
      cov[#cov + 1] = { name = name, k = k }
      kcov = math.max(kcov, k)
    end
  end
  copts.per_user = want_pu or kcov > 0
  local r, msg = core.evaluate(model, part, copts)
  -- Coverage: the best rank of each item in this rank's top-k lists.
  local best
  if r and kcov > 0 then
    best = {}
    for j = 1, r.counts.model_items do best[j] = kcov + 1 end
    local users = r.per_user.user
    if #users > 0 then
      local items, rmsg = core.recommend(model, users, kcov, {
        exclude = copts.exclude, include_seen = copts.include_seen,
        item_bias = copts.item_bias, threads = copts.threads })
      if not items then
        r, msg = nil, rmsg
      else
        for _, list in ipairs(items) do
          for rank, j in ipairs(list) do
            if rank < best[j] then best[j] = rank end
          end
        end
      end
    end
  end
  -- Every rank reaches this point: agree on stopping first, so all leave
  -- together and the collectives below stay matched.
  if core.dist_any(r == nil) then
    core.stop_request() -- only a stop gets here; another rank's is ours
    return nil, msg or "evaluate: stopped"
  end
  if kcov > 0 then best = core.dist_reduce(best, "min") end
  local v = {}
  for _, name in ipairs(cols) do
    local d, m = r.counts.defined[name], r[name]
    v[#v + 1] = (d > 0 and m == m) and m * d or 0
    v[#v + 1] = d
  end
  -- Known rows outside the block are empty in the slice, so each counted
  -- as skipped here: take them out.
  local n_known = math.min(rows, r.counts.model_users)
  local own = math.max(0, math.min(hi, n_known) - lo)
  for _, key in ipairs(count_keys) do
    local x = r.counts[key]
    if key == "skipped_users" then x = x - (n_known - own) end
    v[#v + 1] = x
  end
  local s = core.dist_sum(v)
  local out = { counts = { defined = {},
                           model_users = r.counts.model_users,
                           model_items = r.counts.model_items } }
  for c, name in ipairs(cols) do
    local sum, d = s[2 * c - 1], math.tointeger(s[2 * c])
    out[name] = d > 0 and sum / d or 0 / 0
    out.counts.defined[name] = d
  end
  for q, key in ipairs(count_keys) do
    out.counts[key] = math.tointeger(s[2 * #cols + q])
  end
  local n_items = r.counts.model_items
  for _, c in ipairs(cov) do
    local covered = 0
    for j = 1, n_items do
      if best[j] <= c.k then covered = covered + 1 end
    end
    out[c.name] = (n_items > 0 and out.counts.users > 0)
      and covered / n_items or 0 / 0
    out.counts.defined[c.name] = out.counts.users
  end
  if want_pu then
    local pu = r.per_user
    local mine = { string.pack("<j", #pu.user), pack_doubles(pu.user) }
    for _, name in ipairs(cols) do mine[#mine + 1] = pack_doubles(pu[name]) end
    local all = { user = {} }
    for _, name in ipairs(cols) do all[name] = {} end
    for _, p in ipairs(dist.allgather(table.concat(mine))) do
      local n, pos = string.unpack("<j", p)
      local users = {}
      pos = unpack_doubles(p, pos, n, users)
      for _, u in ipairs(users) do all.user[#all.user + 1] = math.tointeger(u) end
      for _, name in ipairs(cols) do pos = unpack_doubles(p, pos, n, all[name]) end
    end
    out.per_user = all
  end
  return out
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
--   opts.distributed: false evaluates every test user on this host even
--     in a multi-host job (default: split over the ranks, see above; then
--     every rank must call evaluate)
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
  if opts.distributed ~= nil and type(opts.distributed) ~= "boolean" then
    error("evaluate: option 'distributed' must be a boolean", 2)
  end
  local cols = M.columns(opts)
  local copts = {
    metrics = cols, exclude = opts.exclude, include_seen = opts.include_seen,
    item_bias = opts.item_bias, per_user = opts.per_user,
    threads = opts.threads, block = opts.block,
  }
  local dist = split_over_ranks(model, test, opts)
  local r, msg
  if dist then
    r, msg = evaluate_split(dist, model, test, cols, copts)
  else
    r, msg = core.evaluate(model, test, copts)
  end
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
