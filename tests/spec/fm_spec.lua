-- moonfm.FM (binding) and moonfm.fm (the class).
local core = require "moonfm.core"
local fm = require "moonfm.fm"

-- A small world: users 1..60 like items of their group (3 groups of 20
-- items), a few random items besides.
local function world(seed)
  local rows, cols = {}, {}
  local rnd = seed or 1
  local function rand(n)
    rnd = (rnd * 1103515245 + 12345) % 2147483648
    return rnd % n + 1
  end
  for u = 1, 60 do
    local g = (u - 1) % 3
    for _ = 1, 8 do
      rows[#rows + 1] = u
      cols[#cols + 1] = g * 20 + rand(20)
    end
    rows[#rows + 1] = u
    cols[#cols + 1] = rand(60)
  end
  return core.csr(60, 60, rows, cols)
end

local function mean_group_margin(m)
  -- Mean score of in-group items minus out-of-group items.
  local us, is, sign = {}, {}, {}
  for u = 1, 60, 7 do
    for i = 1, 60 do
      us[#us + 1], is[#is + 1] = u, i
      sign[#sign + 1] = ((u - 1) % 3 == (i - 1) // 20) and 1 or -1
    end
  end
  local s = m:score(us, is)
  local a, na, b, nb = 0, 0, 0, 0
  for q = 1, #s do
    if sign[q] > 0 then
      a, na = a + s[q], na + 1
    else
      b, nb = b + s[q], nb + 1
    end
  end
  return a / na - b / nb
end

describe("moonfm.core fm", function()
  it("builds a CSR from 1-based triplets", function()
    local x = core.csr(3, 4, { 1, 3, 3 }, { 2, 4, 4 }, { 1, 2, 3 })
    assert.same({ 3, 4, 2 }, { x:shape() })
    assert.matches("moonfm.CSR (3 x 4, 2 entries)", tostring(x), 1, true)
    x:close()
    assert.has_error(function() x:shape() end,
                     "attempt to use a closed moonfm.CSR")
    assert.has_error(function() core.csr(3, 4, { 4 }, { 1 }) end)
  end)

  it("creates, fits and scores a model", function()
    local x = world()
    local m <close> = core.fm_new(60, 60, { factors = 8, loss = "bpr",
                                            seed = 3, threads = 1 })
    assert.same({ 60, 60, 0, 0 }, { m:shape() })
    local r = m:fit(x, { epochs = 30 })
    assert.equal(30, r.epochs)
    assert.is_true(r.samples > 0 and r.seconds >= 0 and r.loss > 0)
    assert.equal(30, m:epochs())
    assert.is_true(mean_group_margin(m) > 0.5)
    local s = m:score({ 1, 2 }, { 3, 4 })
    assert.equal(2, #s)
    assert.is_number(s[1])
  end)

  it("counts the samples the logistic loss labels -1", function()
    -- All values 1, threshold 0: every label +1 (the recipe warns).
    local m <close> = core.fm_new(60, 60, { factors = 4, loss = "logistic",
                                            threads = 1 })
    assert.equal(0, m:fit(world(), { epochs = 1 }).negatives)
    -- Values 1 and 2, threshold 1.5: the 1s are negatives.
    local x = core.csr(3, 4, { 1, 1, 2, 3 }, { 1, 2, 3, 4 }, { 1, 2, 1, 2 })
    local n <close> = core.fm_new(3, 4, { factors = 4, loss = "logistic",
                                          logistic_threshold = 1.5,
                                          threads = 1 })
    assert.equal(2, n:fit(x, { epochs = 1 }).negatives)
    local b <close> = core.fm_new(3, 4, { factors = 4, loss = "bpr",
                                          threads = 1 })
    assert.equal(0, b:fit(x, { epochs = 1 }).negatives)
  end)

  it("is bit-identical with one thread and a seed", function()
    local x = world()
    local function run()
      local m <close> = core.fm_new(60, 60, { factors = 8, threads = 1,
                                              seed = 9 })
      m:fit(x, { epochs = 3 })
      return m:score({ 1, 5, 9 }, { 1, 30, 60 })
    end
    assert.same(run(), run())
  end)

  it("exposes the scorer hooks for evaluation and the model file", function()
    local m <close> = core.fm_new(4, 5, { factors = 2 })
    assert.equal("userdata", type(getmetatable(m).__mfm_scorer))
    local emb, bias, n, k = m:representations("item")
    assert.equal(5, n)
    assert.equal(2, k)
    assert.equal(5 * 2 * 4, #emb)
    assert.equal(5 * 4, #bias)
  end)

  it("folds in new users from their items or features", function()
    local x = world()
    local m <close> = core.fm_new(60, 60, { factors = 8, threads = 1 })
    m:fit(x, { epochs = 20 })
    local v, b = m:fold_in({ 1, 2, 3, 4, 5 }, nil, { epochs = 30 })
    assert.equal(8, #v)
    assert.is_number(b)
    local s = m:score_vector(v, b, { 6, 7, 8, 50, 51, 52 })
    assert.is_true(s[1] + s[2] + s[3] > s[4] + s[5] + s[6])
    assert.has_error(function() m:fold_in({ 61 }) end)
    assert.has_error(function() m:fold_in_features({ 1 }) end)

    local uf = core.csr(60, 3, { 1, 2 }, { 1, 3 })
    local h <close> = core.fm_new(60, 60, { factors = 4, user_features = uf })
    assert.same({ 60, 60, 3, 0 }, { h:shape() })
    local fv = h:fold_in_features({ 1, 3 }, { 1, 1 })
    assert.equal(4, #fv)
  end)

  it("checks its arguments", function()
    local x = world()
    assert.has_error(function() core.fm_new(3, 3, { bogus = 1 }) end,
                     "fm_new: unknown option 'bogus'")
    assert.has_error(function() core.fm_new(3, 3, { loss = "hinge" }) end)
    assert.has_error(function() core.fm_new(3, 3, { factors = 0 }) end)
    local m <close> = core.fm_new(10, 10, { factors = 2 })
    local ok, msg = pcall(m.fit, m, x)
    assert.is_false(ok)
    assert.matches("larger than the model", msg, 1, true)
    assert.has_error(function() m:score({ 11 }, { 1 }) end)
    assert.has_error(function() m:fit(x, { epoch = 1 }) end,
                     "fit: unknown option 'epoch'")
  end)

  it("returns fail, msg when stopped", function()
    local x = world()
    local m <close> = core.fm_new(60, 60, { factors = 4 })
    core.stop_request()
    local r, msg = m:fit(x, { epochs = 3 })
    core.stop_reset()
    assert.is_nil(r)
    assert.matches("stopped", msg, 1, true)
    assert.equal(0, m:epochs())
    assert.is_table(m:fit(x, { epochs = 1 }))
  end)
end)

describe("moonfm.fm", function()
  it("has documented defaults and validates options", function()
    assert.equal("warp", fm.defaults.loss)
    assert.equal(0.05, fm.defaults.learning_rate)
    local ok, e = pcall(fm.new, { lossy = "warp" })
    assert.is_false(ok)
    assert.matches("unknown option 'lossy'", tostring(e), 1, true)
    ok, e = pcall(fm.new, { factors = "8" })
    assert.is_false(ok)
    assert.matches("option 'factors' must be a integer", tostring(e), 1, true)
    ok, e = pcall(fm.new, { kos_k = 20 })
    assert.is_false(ok)
    assert.matches("kos_k", tostring(e), 1, true)
    -- The core's bounds are checked here, as hyperparameter errors.
    ok, e = pcall(fm.new, { max_sampled = 1000001 })
    assert.is_false(ok)
    assert.matches("option 'max_sampled' must be in 1..1000000", tostring(e),
                   1, true)
    assert.equal("HyperparameterError", e.category)
    assert.equal(8, fm.new({ factors = 8.0 }):params().factors)
  end)

  it("uses at most the core's 64 threads when asked for more", function()
    local m <close> = fm.new { factors = 4, threads = 96, epochs = 1 }
    assert(m:fit(world()))
    assert.equal(64, m:params().threads)
    assert.is_false(pcall(fm.new, { threads = 1025 }))
  end)

  it("fits, continues with fit_partial and scores", function()
    local x = world()
    local m <close> = fm.new { factors = 8, loss = "warp", epochs = 5,
                               threads = 1 }
    assert.has_error(function() m:score({ 1 }, { 1 }) end)
    local r = assert(m:fit(x))
    assert.equal(5, r.epochs)
    assert(m:fit_partial(x, { epochs = 15 }))
    assert.equal(20, m:params().epochs_trained)
    assert.is_true(mean_group_margin(m) > 0.5)
    -- fit starts over.
    assert(m:fit(x, { epochs = 2 }))
    assert.equal(2, m:params().epochs_trained)
    assert.equal("warp", m:params().loss)
  end)

  it("leaves room for users added later", function()
    local x = world()
    local m <close> = fm.new { factors = 4, n_users = 80, epochs = 1 }
    assert(m:fit(x))
    assert.same({ 80, 60, 0, 0 }, { m:shape() })
    local big = core.csr(90, 60, { 90 }, { 1 })
    assert.has_error(function() m:fit_partial(big) end)
  end)

  it("trains a hybrid model with item features", function()
    local x = world()
    local rows, cols = {}, {}
    for i = 1, 60 do
      rows[#rows + 1], cols[#cols + 1] = i, (i - 1) // 20 + 1
    end
    local tags = core.csr(60, 3, rows, cols)
    local m <close> = fm.new { factors = 8, item_features = tags, epochs = 20,
                               threads = 1 }
    assert(m:fit(x))
    assert.same({ 60, 60, 0, 3 }, { m:shape() })
    assert.is_true(mean_group_margin(m) > 0.5)
  end)
end)
