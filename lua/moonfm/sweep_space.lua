-- Search spaces of `moonfm sweep`: parameter specs, seeded sampling and the
-- list of trials.  Pure Lua, no I/O (tested in tests/spec/sweep_spec.lua).
--
-- A space maps hyperparameter names to specs:
--   { "grid", v1, v2, ... }        every value, crossed with the other grids
--   { "choice", v1, v2, ... }      one value drawn at random per trial
--   { "uniform", lo, hi }          a float drawn uniformly in [lo, hi)
--   { "log_uniform", lo, hi }      exp(uniform(log lo, log hi)), 0 < lo < hi
--   { "int_uniform", lo, hi }      an integer in [lo, hi], uniformly
--   a plain value                  the same in every trial (like `fixed`)
--
-- Trial i (1-based) takes grid combination ((i - 1) % G) + 1 (the last
-- name, in sorted order, varying fastest) and fresh random draws from a
-- generator seeded by (seed, i) alone, so a trial's values do not depend on
-- how many trials there are or in which order they run.
local M = {}

local RANDOM = { choice = true, uniform = true, log_uniform = true,
                 int_uniform = true }

-- splitmix64 (Steele, Lea, Flood 2014): one 64-bit integer step.  Lua 5.4
-- integers wrap around and `>>` is a logical shift, as the algorithm wants.
local function splitmix(x)
  x = x + 0x9E3779B97F4A7C15
  local z = x
  z = (z ~ (z >> 30)) * -4658895280553007687 -- 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * -7723592293110705685 -- 0x94D049BB133111EB
  return x, z ~ (z >> 31)
end

-- rng(seed, stream) -> function() -> float in [0, 1)
function M.rng(seed, stream)
  local state = select(2, splitmix(seed * 1000003 + (stream or 0)))
  return function()
    local z
    state, z = splitmix(state)
    return (z >> 11) * (1.0 / 9007199254740992.0) -- 2^-53
  end
end

-- Floats keep 6 significant digits, so the value a trial gets, the one
-- in its hyperparameters.json and the one in the results are the same.
local function round6(x)
  return tonumber(string.format("%.6g", x))
end

-- A number a trial can use: not NaN, not infinite (tonumber("inf") is nil,
-- so a drawn inf or NaN would silently drop the hyperparameter).
local function finite(v)
  return type(v) ~= "number" or (v == v and v > -math.huge and v < math.huge)
end
M.finite = finite

local function kind_of(spec)
  if type(spec) ~= "table" then return "fixed" end
  return spec[1]
end

-- check(space) -> names (sorted) | raises a message (string) on a bad spec.
function M.check(space)
  if type(space) ~= "table" then error("space must be a table", 0) end
  local names = {}
  for name, spec in pairs(space) do
    if type(name) ~= "string" or name == "" then
      error("space: keys must be hyperparameter names", 0)
    end
    names[#names + 1] = name
    local k = kind_of(spec)
    local where = "space." .. name
    if k == "fixed" then
      if type(spec) ~= "number" and type(spec) ~= "string" and
         type(spec) ~= "boolean" then
        error(where .. ": a value must be a number, string or boolean", 0)
      end
      if not finite(spec) then
        error(string.format("%s: %s is not a finite number", where,
              tostring(spec)), 0)
      end
    elseif k == "grid" or k == "choice" then
      if #spec < 2 then
        error(where .. ": " .. k .. " needs at least one value, as in { \""
              .. k .. "\", 1, 2 }", 0)
      end
      for i = 2, #spec do
        local t = type(spec[i])
        if t ~= "number" and t ~= "string" and t ~= "boolean" then
          error(string.format("%s: value %d must be a number, string or "
                .. "boolean", where, i - 1), 0)
        end
        if not finite(spec[i]) then
          error(string.format("%s: value %d (%s) is not a finite number",
                where, i - 1, tostring(spec[i])), 0)
        end
      end
    elseif k == "uniform" or k == "log_uniform" or k == "int_uniform" then
      local lo, hi = spec[2], spec[3]
      if type(lo) ~= "number" or type(hi) ~= "number" or #spec ~= 3 then
        error(string.format("%s: %s needs two numbers, as in { \"%s\", lo, "
              .. "hi }", where, k, k), 0)
      end
      if not finite(lo) or not finite(hi) then
        error(string.format("%s: the bounds of %s must be finite numbers, "
              .. "got %s and %s", where, k, tostring(lo), tostring(hi)), 0)
      end
      if not (lo < hi) then
        error(string.format("%s: lo (%s) must be below hi (%s)", where, lo,
              hi), 0)
      end
      if k == "log_uniform" and lo <= 0 then
        error(where .. ": log_uniform needs lo > 0", 0)
      end
      if k == "int_uniform" and (not math.tointeger(lo) or
                                 not math.tointeger(hi)) then
        error(where .. ": int_uniform needs integer bounds", 0)
      end
      -- hi - lo must stay finite (uniform) and within 2^53 (int_uniform),
      -- or the draws overflow to inf, NaN or a wrapped integer.
      if (k == "uniform" and not finite(hi - lo)) or (k == "int_uniform"
          and not ((hi + 0.0) - (lo + 0.0) < 2^53)) then
        error(string.format("%s: the range %s to %s is too wide to draw "
              .. "from", where, tostring(lo), tostring(hi)), 0)
      end
    else
      error(string.format("%s: unknown distribution %q (grid, choice, "
            .. "uniform, log_uniform, int_uniform)", where, tostring(k)), 0)
    end
  end
  table.sort(names)
  return names
end

-- The grid combinations: a list of {name = value}.
local function grid(space, names)
  local combos = { {} }
  for _, name in ipairs(names) do
    local spec = space[name]
    if kind_of(spec) == "grid" then
      local nxt = {}
      for _, c in ipairs(combos) do
        for i = 2, #spec do
          local d = {}
          for k, v in pairs(c) do d[k] = v end
          d[name] = spec[i]
          nxt[#nxt + 1] = d
        end
      end
      combos = nxt
    end
  end
  return combos
end

-- info(space) -> {names=, grid_size=, random=bool}
function M.info(space)
  local names = M.check(space)
  local random = false
  for _, n in ipairs(names) do
    if RANDOM[kind_of(space[n])] then random = true end
  end
  return { names = names, grid_size = #grid(space, names), random = random }
end

-- draw(spec, u) -> value for a random spec, from u() in [0, 1).
local function draw(spec, u)
  local k = spec[1]
  if k == "choice" then
    local n = #spec - 1
    return spec[2 + math.min(n - 1, math.floor(u() * n))]
  elseif k == "uniform" then
    return round6(spec[2] + (spec[3] - spec[2]) * u())
  elseif k == "log_uniform" then
    local a, b = math.log(spec[2]), math.log(spec[3])
    return round6(math.exp(a + (b - a) * u()))
  else -- int_uniform
    local n = spec[3] - spec[2] + 1
    return spec[2] + math.min(n - 1, math.floor(u() * n))
  end
end

-- trials(space, {trials = n or nil, seed = s}) -> list of {name = value}
-- Raises a message when the count does not fit the space.
function M.trials(space, opts)
  local names = M.check(space)
  local combos = grid(space, names)
  local random = M.info(space).random
  local n = opts.trials
  if n == nil then
    if random then
      error("trials: the space has random distributions; say how many "
            .. "trials to run (trials = N)", 0)
    end
    n = #combos
  end
  if not random and n > #combos then
    error(string.format("trials: %d asked, but the grid has only %d "
          .. "combinations and nothing random; use at most %d", n, #combos,
          #combos), 0)
  end
  local seed = opts.seed or 1
  local out = {}
  for i = 1, n do
    local t = {}
    for k, v in pairs(combos[(i - 1) % #combos + 1]) do t[k] = v end
    local u = M.rng(seed, i)
    for _, name in ipairs(names) do
      local spec = space[name]
      local k = kind_of(spec)
      if k == "fixed" then t[name] = spec
      elseif RANDOM[k] then t[name] = draw(spec, u) end
    end
    out[i] = t
  end
  return out
end

-- The text a value takes in hyperparameters.json (SageMaker passes
-- strings): integers plainly, floats with %.6g (integral floats keep a
-- ".0"), booleans as true/false.
function M.format_value(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then
    local s = string.format("%.6g", v):gsub(",", ".")
    if not s:find("[.eEn]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

return M
