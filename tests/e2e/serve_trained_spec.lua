-- `moonfm serve` on models trained through the real path: `moonfm run
-- train.lua` on the bundled sample data (a hybrid fm model: the sample has
-- item features), with algorithm=als, and with a user_features channel
-- made here.  Answers are checked against scores computed in this file
-- from the saved arrays (plain weighted sums and dot products).
local e2e = require "support.e2e"
local http = require "support.serve_http"
local modelfile = require "moonfm.modelfile"
local cjson = require "cjson"

local J = "application/json"
local sample = e2e.source .. "/data/sample"

-- Trains into a new base dir: `moonfm run train.lua ARGS --base-dir B`;
-- without --channel arguments `run` uses the bundled sample data.
local function train(args)
  local base = e2e.tmpdir("trained")
  local argv = { "run", e2e.source .. "/recipes/train.lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = "--base-dir"
  argv[#argv + 1] = base
  local code, out, err = e2e.run(argv)
  assert.equal(0, code, out .. err)
  return base
end

-- The training items of each user, from the sample's train.csv.
local function seen_of(text)
  local seen = {}
  for line in text:gmatch("[^\r\n]+") do
    local u, i = line:match("^([^,]+),([^,]+)")
    if u and u ~= "user" then
      seen[u] = seen[u] or { list = {}, set = {} }
      if not seen[u].set[i] then
        seen[u].set[i] = true
        seen[u].list[#seen[u].list + 1] = i
      end
    end
  end
  return seen
end

local function values(a, fmt)
  local out, size = {}, string.packsize(fmt)
  for p = 1, #a.data, size do out[#out + 1] = string.unpack(fmt, a.data, p) end
  return out
end

-- Id list (index order, 0-based positions) and id -> index.
local function idmap(A, prefix)
  local bytes, offs = A[prefix .. ".ids"].data, values(A[prefix .. ".offsets"], "<i8")
  local ids, index = {}, {}
  for n = 1, #offs - 1 do
    local id = bytes:sub(offs[n] + 1, offs[n + 1])
    ids[n - 1] = id
    index[id] = n - 1
  end
  return ids, index
end

-- The model as the reference sees it: representations of every user and
-- item (k-vectors and biases, by 0-based index), id maps, header.
local function reference(base)
  local m, info = assert(modelfile.load(base .. "/model/model.moonfm",
                                        { raw = true }))
  local A, h = m.arrays, info.header
  local R = { h = h, A = A }
  R.users, R.user_index = idmap(A, "users")
  R.items, R.item_index = idmap(A, "items")
  if h.kind == "als" then
    local k = math.tointeger(h.factors)
    local uf, itf = values(A.user_factors, "<f"), values(A.item_factors, "<f")
    local function side(t, n)
      local rep, bias = {}, {}
      for e = 0, n - 1 do
        rep[e] = table.move(t, e * k + 1, e * k + k, 1, {})
        bias[e] = 0
      end
      return rep, bias
    end
    R.k = k
    R.urep, R.ubias = side(uf, A.user_factors.rows)
    R.irep, R.ibias = side(itf, A.item_factors.rows)
    return R
  end
  local p = h.params
  local k = math.tointeger(p.factors)
  R.k = k
  local function side(name, n, nfeat, identity)
    local emb = values(A[name .. "_embeddings"], "<f")
    local eb = values(A[name .. "_biases"], "<f")
    local ip, ix, dx = {}, {}, {}
    if nfeat > 0 then
      ip = values(A[name .. "_features.indptr"], "<i8")
      ix = values(A[name .. "_features.indices"], "<i4")
      dx = values(A[name .. "_features.data"], "<f")
    end
    identity = nfeat == 0 or identity
    local off = identity and n or 0
    -- The weighted rows of one representation (normalised when asked).
    local function combine(rows)
      local sum = 0
      for _, r in ipairs(rows) do sum = sum + r.w end
      local v, b = {}, 0
      for j = 1, k do v[j] = 0 end
      for _, r in ipairs(rows) do
        local w = (p.normalize and sum ~= 0) and r.w / sum or r.w
        for j = 1, k do v[j] = v[j] + w * emb[r.row * k + j] end
        b = b + w * eb[r.row + 1]
      end
      return v, b
    end
    local rep, bias = {}, {}
    for e = 0, n - 1 do
      local rows = {}
      if identity then rows[1] = { row = e, w = 1 } end
      if nfeat > 0 and e + 2 <= #ip then
        for q = ip[e + 1] + 1, ip[e + 2] do
          rows[#rows + 1] = { row = off + ix[q], w = dx[q] }
        end
      end
      rep[e], bias[e] = combine(rows)
    end
    return rep, bias, function(features)
      local rows = {}
      for _, f in ipairs(features) do rows[#rows + 1] = { row = off + f, w = 1 } end
      return combine(rows)
    end
  end
  local nuf, nif = math.tointeger(h.n_user_features), math.tointeger(h.n_item_features)
  R.urep, R.ubias, R.from_features = side("user", math.tointeger(h.n_users), nuf,
                                          p.user_identity)
  R.irep, R.ibias = side("item", math.tointeger(h.n_items), nif, p.item_identity)
  if not p.score_item_bias then
    for e in pairs(R.ibias) do R.ibias[e] = 0 end
  end
  return R
end

-- Reference scores of a representation against every item.
local function scores(R, v, b)
  local s = {}
  for i, r in pairs(R.irep) do
    local d = b + R.ibias[i]
    for j = 1, R.k do d = d + v[j] * r[j] end
    s[R.items[i]] = d
  end
  return s
end

-- Checks a top-k answer against reference scores: each score matches, the
-- order is by score, nothing excluded appears, and no other candidate
-- scores higher than the last one returned.
local function check_topk(pred, ref, k, excluded)
  excluded = excluded or {}
  assert.equal(k, #pred.items)
  local got = {}
  for n, id in ipairs(pred.items) do
    assert.is_nil(excluded[id], "excluded item " .. id .. " recommended")
    assert.is_not_nil(ref[id], "unknown item " .. id)
    assert.near(ref[id], pred.scores[n], 1e-3)
    if n > 1 then assert.is_true(pred.scores[n] <= pred.scores[n - 1]) end
    got[id] = true
  end
  local last = pred.scores[#pred.scores]
  for id, s in pairs(ref) do
    if not got[id] and not excluded[id] then
      assert.is_true(s <= last + 1e-3, id .. " scores " .. s ..
                     " above the last answer " .. last)
    end
  end
end

local function post(srv, req)
  local st, body = http.curl(srv.port, "/invocations",
                             { type = J, body = cjson.encode(req) })
  return st, st == 200 and cjson.decode(body) or body
end

local function mean(t)
  local s = 0
  for _, x in ipairs(t) do s = s + x end
  return s / #t
end

-- Fold-in: a new user from a known user's training items gets none of
-- them recommended, and scores those items above the average item.
local function check_fold_in(srv, R, items)
  local st, r = post(srv, { interactions = items, k = 10 })
  assert.equal(200, st, r)
  local set = {}
  for _, i in ipairs(items) do set[i] = true end
  assert.equal(10, #r.predictions[1].items)
  for _, id in ipairs(r.predictions[1].items) do assert.is_nil(set[id]) end
  local all = {}
  for i = 0, #R.items do all[#all + 1] = R.items[i] end
  st, r = post(srv, { instances = {
    { interactions = items, items = items },
    { interactions = items, items = all } } })
  assert.equal(200, st, r)
  assert.equal(#items, #r.predictions[1].scores)
  assert.is_true(mean(r.predictions[1].scores) > mean(r.predictions[2].scores))
  st, r = post(srv, { interactions = { items[1], "no-such-item" } })
  assert.equal(400, st)
  assert.matches("interactions[1]: unknown item id 'no-such-item'", r, 1, true)
end

local function common(srv, R, seen)
  local u = "u0001"
  local ui = R.user_index[u]
  local ref = scores(R, R.urep[ui], R.ubias[ui])
  -- top-k, training items excluded (by default and when asked)
  local st, r = post(srv, { user = u, k = 10 })
  assert.equal(200, st, r)
  check_topk(r.predictions[1], ref, 10, seen[u].set)
  -- without exclusion: the plain top-k over every item
  st, r = post(srv, { user = u, k = 25, exclude_seen = false })
  assert.equal(200, st, r)
  check_topk(r.predictions[1], ref, 25)
  -- a heavy user: exclusion really removes the training items
  local heavy, most = nil, 0
  for id, s in pairs(seen) do
    if #s.list > most or (#s.list == most and id < heavy) then heavy, most = id, #s.list end
  end
  local hi = R.user_index[heavy]
  st, r = post(srv, { user = heavy, k = 50 })
  assert.equal(200, st, r)
  check_topk(r.predictions[1], scores(R, R.urep[hi], R.ubias[hi]), 50,
             seen[heavy].set)
  -- scoring given items, in the given order
  local items = { seen[u].list[1], R.items[0], R.items[#R.items] }
  st, r = post(srv, { instances = { { user = u, items = items } } })
  assert.equal(200, st, r)
  assert.same(items, r.predictions[1].items)
  for n, id in ipairs(items) do assert.near(ref[id], r.predictions[1].scores[n], 1e-3) end
  check_fold_in(srv, R, seen[u].list)
  -- similar_to: the nearest items by cosine of the item representations
  local i0 = seen[u].list[1]
  local function cosine(a, b)
    local d, na, nb = 0, 0, 0
    for t = 1, #a do d, na, nb = d + a[t] * b[t], na + a[t] ^ 2, nb + b[t] ^ 2 end
    return (na > 0 and nb > 0) and d / math.sqrt(na * nb) or 0
  end
  local a = R.irep[R.item_index[i0]]
  local want = {}
  for i, r in pairs(R.irep) do
    if R.items[i] ~= i0 then want[#want + 1] = { R.items[i], cosine(a, r) } end
  end
  table.sort(want, function(x, y) return x[2] > y[2] end)
  st, r = post(srv, { similar_to = i0, k = 5 })
  assert.equal(200, st, r)
  for n = 1, 5 do
    assert.near(want[n][2], r.predictions[1].scores[n], 1e-4)
    assert.are_not.equal(i0, r.predictions[1].items[n])
  end
  assert.equal(want[1][1], r.predictions[1].items[1])
end

describe("moonfm serve on trained models", function()
  local seen, servers = nil, {}
  setup(function()
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
    seen = seen_of(assert(e2e.read(sample .. "/train.csv")))
  end)
  teardown(function()
    for _, s in ipairs(servers) do http.stop(s) end
  end)
  local function serve(base)
    local s = http.start(base)
    servers[#servers + 1] = s
    assert.equal(200, (http.curl(s.port, "/ping")))
    return s
  end

  it("serves the default (hybrid, item features) fm model", function()
    local base = train { "epochs=3" }
    local R = reference(base)
    assert.equal("fm", R.h.kind)
    assert.is_true(R.h.n_item_features > 0)
    assert.is_truthy(R.A["item_feature_names.ids"])
    local srv = serve(base)
    assert.matches("model fm: 1000 users", e2e.read(srv.dir .. "/err"), 1, true)
    -- A C-side line (mfm_log), in the training log's format (rule 83).
    assert.matches("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ INFO serve: model fm: ",
                   e2e.read(srv.dir .. "/err"))
    common(srv, R, seen)
    local st, r = post(srv, { features = { "genre:horror" } })
    assert.equal(400, st)
    assert.matches("cannot represent a new user from features", r, 1, true)
    -- nothing was written next to the model
    local files = {}
    for f in require("lfs").dir(base .. "/model") do files[#files + 1] = f end
    table.sort(files)
    assert.same({ ".", "..", "item_bias.npy", "item_factors.npy",
                  "item_ids.txt", "model.moonfm", "user_bias.npy",
                  "user_factors.npy", "user_ids.txt" }, files)
  end)

  it("serves an ALS model", function()
    local base = train { "algorithm=als", "epochs=3" }
    local R = reference(base)
    assert.equal("als", R.h.kind)
    local srv = serve(base)
    common(srv, R, seen)
  end)

  it("serves users with side features and answers features requests", function()
    -- Two made-up user features per user: a group and a parity.
    local rows, users = { "user,feature" }, {}
    for id in pairs(seen) do users[#users + 1] = id end
    table.sort(users)
    for n, id in ipairs(users) do
      rows[#rows + 1] = id .. ",grp:" .. (n % 5)
      rows[#rows + 1] = id .. ",par:" .. (n % 2)
    end
    local uf = e2e.tmpdir("uf") .. "/user_features.csv"
    e2e.write(uf, table.concat(rows, "\n") .. "\n")
    local base = train { "epochs=3",
      "--channel", "train=" .. sample .. "/train.csv",
      "--channel", "item_features=" .. sample .. "/item_features.csv",
      "--channel", "user_features=" .. uf }
    local R = reference(base)
    assert.equal(7, R.h.n_user_features)
    local _, fidx = idmap(R.A, "user_feature_names")
    local srv = serve(base)
    assert.matches("fold-in, feature users; ready", e2e.read(srv.dir .. "/err"),
                   1, true)
    common(srv, R, seen)
    -- a new user from feature names: the normalised sum of their rows
    local v, b = R.from_features { fidx["grp:1"], fidx["par:0"] }
    local st, r = post(srv, { features = { "grp:1", "par:0" }, k = 20 })
    assert.equal(200, st, r)
    check_topk(r.predictions[1], scores(R, v, b), 20)
    st, r = post(srv, { instances = { { features = { "grp:3" }, k = 5 },
                                      { user = "u0002", k = 5 } } })
    assert.equal(200, st, r)
    v, b = R.from_features { fidx["grp:3"] }
    check_topk(r.predictions[1], scores(R, v, b), 5)
    -- unknown names are all named
    st, r = post(srv, { features = { "grp:1", "nope", "zip:9" } })
    assert.equal(400, st)
    assert.matches("features: unknown feature names 'nope', 'zip:9'", r, 1, true)
    assert.equal(200, (http.curl(srv.port, "/ping")))
  end)
end)
