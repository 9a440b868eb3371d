-- The model file in Lua: save, load, inspect and the exports for other
-- tools.  The bytes are handled in C (core.mfile_*, docs/model-file.md);
-- this layer writes and reads the JSON header and builds the right model
-- kind from it.
--
--   assert(modelfile.save(path, model, { kind = "fm", n_users = ...,
--          n_items = ..., factors = ..., params = hp, metrics = m },
--          { users = users_map, items = items_map }))
--   local model, info = assert(modelfile.load(path))
--   -- info.header, info.users, info.items, info.extras, info.checkpoint
--
-- A "model" is a model userdata (any type whose metatable carries
-- __mfm_scorer) or a raw model, a table { arrays = { {name=, dtype=, rows=,
-- cols=, data=binary string}, ... } }, which tools and tests use to handle
-- a file's arrays without building a model.
local core = require "moonfm.core"
local cjson = require("cjson").new()

local M = {}

M.FORMAT_VERSION = 1
M.FILE_NAME = "model.moonfm"
-- Id maps are stored as the arrays <name>.ids (u8) and <name>.offsets (i64).
M.IDMAPS = { "users", "items" }
-- The feature-name maps of a hybrid model (column ids of the side-feature
-- matrices), saved and loaded the same way but never exported.
M.FEATURE_IDMAPS = { "user_feature_names", "item_feature_names" }
-- Names of the export files, next to the model.
M.EXPORTS = {
  user = "user_factors.npy", item = "item_factors.npy",
  user_bias = "user_bias.npy", item_bias = "item_bias.npy",
  users = "user_ids.txt", items = "item_ids.txt",
}

-- Header keys this module fills in; callers do not set them.
local RESERVED = { format = true, format_version = true,
                   moonfm_version = true, extra_arrays = true }

local function log()
  local ok, l = pcall(require, "moonfm.log")
  return ok and l or nil
end

-- Builders of empty models from a header, by kind: build(header, file) ->
-- model, where file is the open moonfm.ModelFile (for :arrays()).  The
-- model is then filled from the file's arrays.
M.kinds = {}

function M.register_kind(kind, build)
  if type(kind) ~= "string" or type(build) ~= "function" then
    error("register_kind(kind, build): a string and a function expected", 2)
  end
  M.kinds[kind] = build
end

local function int_field(h, key)
  local v = math.tointeger(h[key])
  if not v or v < 0 then
    error(string.format("header field '%s' must be an integer >= 0, got %s",
                        key, tostring(h[key])), 0)
  end
  return v
end

-- The model constructors come from the model layers (core.fm_new,
-- core.als_new); a build without them says so when loading.
local function core_builder(fname)
  return function(h)
    local new = core[fname]
    if not new then
      error("this moonfm has no " .. fname .. " (model kind '" .. h.kind ..
            "' is not built in)", 0)
    end
    local opts = {}
    for k, v in pairs(type(h.params) == "table" and h.params or {}) do
      opts[k] = math.type(v) == "float" and math.tointeger(v) or v
    end
    if h.factors ~= nil then opts.factors = int_field(h, "factors") end
    return new(int_field(h, "n_users"), int_field(h, "n_items"), opts)
  end
end
M.kinds.fm = core_builder("fm_new")
M.kinds.als = core_builder("als_new")

-- moonfm.Factors (core.factors): given matrices, biases when the file has
-- them.
M.kinds.factors = function(h, f)
  local nu, ni = int_field(h, "n_users"), int_field(h, "n_items")
  local k = int_field(h, "factors")
  local has = {}
  for _, a in ipairs(f:arrays()) do has[a.name] = true end
  local function zeros(n) return string.rep("\0", 4 * n) end
  return core.factors(zeros(nu * k), zeros(ni * k),
                      has.user_bias and zeros(nu) or nil,
                      has.item_bias and zeros(ni) or nil, k)
end

-- JSON cannot hold NaN or infinities: they become null, with the rest
-- kept; tables are copied so the caller's stay untouched.
local function sanitize(v, depth)
  depth = depth or 0
  if depth > 32 then error("header: nested too deeply", 0) end
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return cjson.null end
    return v
  elseif t == "table" then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error("header: keys must be strings or integers", 0)
      end
      out[k] = sanitize(x, depth + 1)
    end
    return out
  elseif t == "string" or t == "boolean" or v == cjson.null then
    return v
  end
  error("header: cannot store a " .. t .. " in JSON", 0)
end

-- encode_header(header, extra_names) -> JSON text.  Raises on misuse.
function M.encode_header(header, extras)
  if type(header) ~= "table" then error("header: a table expected", 2) end
  if type(header.kind) ~= "string" or header.kind == "" then
    error("header: field 'kind' (a string) is required", 2)
  end
  for k in pairs(RESERVED) do
    if header[k] ~= nil then
      error("header: field '" .. k .. "' is set by moonfm", 2)
    end
  end
  local ok, h = pcall(sanitize, header)
  if not ok then error(h, 2) end
  h.format = "moonfm"
  h.format_version = M.FORMAT_VERSION
  h.moonfm_version = core._VERSION
  if extras and #extras > 0 then h.extra_arrays = extras end
  return cjson.encode(h)
end

local function is_model(m)
  if type(m) == "userdata" then
    local mt = getmetatable(m)
    return type(mt) == "table" and mt.__mfm_scorer ~= nil
  end
  return type(m) == "table" and type(m.arrays) == "table"
end

-- The entries core.mfile_write takes, and the names of the extra arrays.
local function entries(model, idmaps, extras)
  local list, names = {}, {}
  if type(model) == "userdata" then
    list[1] = { model = model }
  else
    for _, a in ipairs(model.arrays) do list[#list + 1] = a end
  end
  for _, group in ipairs { M.IDMAPS, M.FEATURE_IDMAPS } do
    for _, which in ipairs(group) do
      local m = idmaps and idmaps[which]
      if m ~= nil then list[#list + 1] = { name = which, idmap = m } end
    end
  end
  for _, a in ipairs(extras or {}) do
    if type(a) ~= "table" or type(a.name) ~= "string" then
      error("extras: each entry needs a name", 3)
    end
    list[#list + 1] = a
    names[#names + 1] = a.name
  end
  return list, names
end

-- save(path, model, header [, idmaps [, opts]]) -> true | nil, msg
--   header: table with at least kind; usual fields n_users, n_items,
--     factors, params (hyperparameters), metrics, epoch.
--   idmaps: { users = moonfm.IdMap, items = moonfm.IdMap } (optional;
--     also user_feature_names / item_feature_names for a hybrid model)
--   opts.extras: raw arrays saved with the model (e.g. a random generator
--     state), returned by load in info.extras;
--   opts.checkpoint: mark the file as a checkpoint.
-- The write is atomic: on failure the previous file at path is intact.
function M.save(path, model, header, idmaps, opts)
  if type(path) ~= "string" then error("save: path must be a string", 2) end
  if not is_model(model) then error("save: a moonfm model expected", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "extras" and k ~= "checkpoint" then
      error("save: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  if require("moonfm.dist").skip_model_write(path) then return true end
  local list, extra_names = entries(model, idmaps, opts.extras)
  local json = M.encode_header(header, extra_names)
  local ok, msg = core.mfile_write(path, json, list,
                                   { checkpoint = opts.checkpoint == true })
  if not ok then return nil, "save: " .. msg end
  return true
end

-- Opens and validates path; returns the handle and the decoded header.
local function open(path, mode)
  local f, msg = core.mfile_open(path, mode)
  if not f then return nil, msg end
  local ok, h = pcall(cjson.decode, f:header())
  if not ok then
    f:close()
    return nil, path .. ": the JSON header is not valid JSON (" ..
                tostring(h) .. ")"
  end
  if type(h) ~= "table" or type(h.kind) ~= "string" then
    f:close()
    return nil, path .. ": the header has no 'kind' field"
  end
  if h.format ~= "moonfm" then
    f:close()
    return nil, path .. ": the header's 'format' is not \"moonfm\""
  end
  return f, h
end

-- Numbers in the header come back as floats (cjson 2.1.0): integral
-- values of the usual size fields are turned back into integers.
local function fix_ints(h)
  for _, k in ipairs { "n_users", "n_items", "factors", "epoch", "step",
                       "format_version" } do
    if type(h[k]) == "number" then h[k] = math.tointeger(h[k]) or h[k] end
  end
  return h
end

local function raw_arrays(f, only)
  local out = {}
  for _, a in ipairs(f:arrays()) do
    if not only or only[a.name] then
      local data = f:array(a.name)
      out[#out + 1] = { name = a.name, dtype = a.dtype, rows = a.rows,
                        cols = a.cols, data = data }
      out[a.name] = out[#out]
    end
  end
  return out
end

-- load(path [, opts]) -> model, info | nil, msg
--   opts.map: map the file read-only instead of reading it (the handle is
--     then kept open in info.file for views on the mapped arrays);
--   opts.raw: return a raw model (all arrays as strings) instead of
--     building one;
--   opts.build: function(header, file) -> model, overriding the kind's
--     builder;
--   opts.kind: refuse a file of another kind.
-- info = { path, header, version, checkpoint, users, items, extras, file,
--   user_feature_names, item_feature_names (hybrid models) }
function M.load(path, opts)
  if type(path) ~= "string" then error("load: path must be a string", 2) end
  opts = opts or {}
  local f, h = open(path, opts.map and "map" or "read")
  if not f then return nil, "load: " .. h end
  fix_ints(h)
  local function fail(msg)
    f:close()
    return nil, "load: " .. path .. ": " .. msg
  end
  if opts.kind and h.kind ~= opts.kind then
    return fail("holds a '" .. h.kind .. "' model, not '" .. opts.kind ..
                "'")
  end
  local model
  if opts.raw then
    model = { arrays = raw_arrays(f) }
  else
    local build = opts.build or M.kinds[h.kind]
    if not build then
      local known = {}
      for k in pairs(M.kinds) do known[#known + 1] = k end
      table.sort(known)
      return fail("unknown model kind '" .. h.kind .. "' (known: " ..
                  table.concat(known, ", ") .. ")")
    end
    local ok, m = pcall(build, h, f)
    if not ok then
      return fail("cannot build a '" .. h.kind .. "' model from the " ..
                  "header: " .. tostring(m))
    end
    model = m
    local filled, msg = f:fill(model)
    if not filled then
      f:close()
      return nil, "load: " .. msg
    end
  end
  local info = { path = path, header = h, version = f:info().version,
                 checkpoint = f:info().checkpoint, extras = {} }
  local names = {}
  for _, a in ipairs(f:arrays()) do names[a.name] = true end
  local maps = { table.unpack(M.IDMAPS) }
  for _, which in ipairs(M.FEATURE_IDMAPS) do maps[#maps + 1] = which end
  for _, which in ipairs(maps) do
    if names[which .. ".ids"] and names[which .. ".offsets"] then
      local ok, m, msg = pcall(f.idmap, f, which)
      if ok and m then
        info[which] = m
      elseif ok then
        return fail(msg)
      elseif not opts.raw then
        -- This build has no id maps: keep going with indices only.
        local l = log()
        if l then l.warn("load: %s: %s", path, tostring(m)) end
      end
    end
  end
  if type(h.extra_arrays) == "table" then
    local want = {}
    for _, n in ipairs(h.extra_arrays) do want[n] = true end
    info.extras = raw_arrays(f, want)
  end
  if opts.map then info.file = f else f:close() end
  return model, info
end

-- inspect(path) -> summary | nil, msg (the file's one-line reason)
-- summary = { path, version, checkpoint, size, checksum, header (table),
--   header_json, arrays = { {name, dtype, rows, cols, nbytes}, ... } }
function M.inspect(path)
  local f, h = open(path, "read")
  if not f then return nil, h end
  local info = f:info()
  local s = { path = path, version = info.version,
              checkpoint = info.checkpoint, size = info.size,
              checksum = info.checksum, header = fix_ints(h),
              header_json = f:header(), arrays = f:arrays() }
  f:close()
  return s
end

-- export_npy(model, dir [, idmaps [, opts]]) -> paths | nil, msg
-- Writes the user and item representations (float32, (n, factors)), the
-- biases (float32, (n,), zeros when the model has none) and the id maps
-- as text (one id per line, in index order) into dir, each atomically.
-- opts.suffix is added to every file name (multi-host: "." .. host).
function M.export_npy(model, dir, idmaps, opts)
  if not is_model(model) then error("export: a moonfm model expected", 2) end
  if type(dir) ~= "string" then error("export: dir must be a string", 2) end
  opts = opts or {}
  local suffix = opts.suffix or ""
  local paths = {}
  for k, name in pairs(M.EXPORTS) do paths[k] = dir .. "/" .. name .. suffix end
  local ok, msg
  local written = { user = paths.user, item = paths.item,
                    user_bias = paths.user_bias, item_bias = paths.item_bias }
  if type(model) == "userdata" then
    ok, msg = core.npy_write_factors(model, written)
  else
    local a = {}
    for _, x in ipairs(model.arrays) do a[x.name] = x end
    local u, i = a.user_factors, a.item_factors
    if not u or not i then
      error("export: the raw model needs user_factors and item_factors", 2)
    end
    ok, msg = core.npy_write(paths.user, u.data, u.rows, u.cols)
    if ok then ok, msg = core.npy_write(paths.item, i.data, i.rows, i.cols) end
    local ub = a.user_bias and a.user_bias.data or
               string.rep("\0", 4 * u.rows)
    local ib = a.item_bias and a.item_bias.data or
               string.rep("\0", 4 * i.rows)
    if ok then ok, msg = core.npy_write(paths.user_bias, ub, u.rows) end
    if ok then ok, msg = core.npy_write(paths.item_bias, ib, i.rows) end
    -- Raw id maps: the arrays users.ids / users.offsets.
    for _, which in ipairs(M.IDMAPS) do
      local b, o = a[which .. ".ids"], a[which .. ".offsets"]
      if ok and b and o and not (idmaps and idmaps[which]) then
        ok, msg = core.ids_write_text(paths[which], b.data, o.data)
        written[which] = paths[which]
      end
    end
  end
  if not ok then return nil, "export: " .. msg end
  for _, which in ipairs(M.IDMAPS) do
    local m = idmaps and idmaps[which]
    if m ~= nil then
      ok, msg = core.ids_write_text(paths[which], m)
      if not ok then return nil, "export: " .. msg end
      written[which] = paths[which]
    end
  end
  return written
end

return M
