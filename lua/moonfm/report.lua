-- Learning curves and reports: output/data/metrics.json and a
-- self-contained output/data/report.html for a training run, and the
-- report.html of a sweep.  Charts are drawn by Chart.js, read from Debian's
-- libjs-chart.js and inlined, so a report opens offline (a SageMaker job's
-- output.tar.gz, a laptop).  Without Chart.js a report still has every
-- number, in tables, and says why the charts are missing.
local core = require "moonfm.core"

local M = {}

-- Where Chart.js is looked for, first found wins (MOONFM_CHARTJS first).
M.chartjs_paths = {
  "/usr/share/javascript/chart.js/chart.umd.js", -- Chart.js 4 layout
  "/usr/share/javascript/chart.js/chart.min.js", -- bookworm: 3.9.1, UMD
  "/usr/share/javascript/chart.js/chart.js",
}

local chartjs_cache

-- chartjs() -> script text, path | nil
function M.chartjs()
  if chartjs_cache == false then return nil end
  if chartjs_cache then return chartjs_cache[1], chartjs_cache[2] end
  local paths = {}
  local env = os.getenv("MOONFM_CHARTJS")
  if env and env ~= "" then paths[1] = env end
  for _, p in ipairs(M.chartjs_paths) do paths[#paths + 1] = p end
  for _, p in ipairs(paths) do
    local f = io.open(p, "rb")
    if f then
      local s = f:read("a")
      f:close()
      if s and #s > 1000 then
        chartjs_cache = { s, p }
        return s, p
      end
    end
  end
  chartjs_cache = false
  return nil
end

---------------------------------------------------------------------------
-- JSON with stable key order (cjson 2.1.0 neither sorts keys nor knows an
-- empty array from an empty object)

local ARRAY = {}

-- null: encodes as JSON null (a hole in an array, say).
M.null = setmetatable({}, { __name = "moonfm.report.null" })

-- array(t) -> t, marked to encode as a JSON array even when empty.
function M.array(t) return setmetatable(t or {}, ARRAY) end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["/"] = "\\/",
}
local function jstr(s)
  return '"' .. s:gsub('[%c"\\/]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Shortest of %.15g / %.16g / %.17g that reads back exactly; locale-proof.
local function jnum(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  local s
  for _, f in ipairs { "%.15g", "%.16g", "%.17g" } do
    s = string.format(f, v):gsub(",", ".")
    if tonumber(s) == v then break end
  end
  return s
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  return rawget(t, 1) ~= nil
end

local function encode(v, out)
  local t = type(v)
  if t == "nil" or v == M.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = jnum(v)
  elseif t == "string" then out[#out + 1] = jstr(v)
  elseif t == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = jstr(k)
        out[#out + 1] = ":"
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        encode(x, out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = jstr(tostring(v))
  end
end

-- json(v) -> text.  Arrays: tables with [1] or marked with M.array; "/"
-- is escaped, so the text is safe inside an HTML <script> element.
function M.json(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

---------------------------------------------------------------------------
-- HTML

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;",
                                         [">"] = "&gt;", ['"'] = "&quot;" }))
end
M.html_escape = html_escape

local function fmt(v)
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return (string.format("%.6g", v):gsub(",", "."))
  end
  if type(v) == "table" then return M.json(v) end
  return tostring(v)
end

local STYLE = [[
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:4px 0 12px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{width:540px;height:300px;position:relative}
.note{background:#fff4d6;border:1px solid #e8c96b;padding:8px;margin:8px 0}
.failed{color:#a00}.best{background:#eaf7ea}
]]

-- The page: head, body text, the data as JSON, Chart.js and our script.
local function page(title, body, data, script)
  local js = M.chartjs()
  local parts = {
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
    "<title>", html_escape(title), "</title>\n<style>", STYLE, "</style>\n",
    "</head><body>\n", body,
  }
  if not js then
    parts[#parts + 1] = "<p class=\"note\">The charts need Chart.js, which "
      .. "was not found when this report was written (install Debian's "
      .. "libjs-chart.js, or set MOONFM_CHARTJS to chart.umd.js); the "
      .. "tables above have every number.</p>\n"
  end
  parts[#parts + 1] = "<script type=\"application/json\" id=\"moonfm-data\">"
  parts[#parts + 1] = M.json(data)
  parts[#parts + 1] = "</script>\n"
  if js then
    -- A literal "</script" inside the library would end the element.
    parts[#parts + 1] = "<script>" .. js:gsub("</(script)", "<\\/%1")
      .. "\n</script>\n"
    parts[#parts + 1] = "<script>\n" .. script .. "\n</script>\n"
  end
  parts[#parts + 1] = "</body></html>\n"
  return table.concat(parts)
end

-- Shared chart helpers (JavaScript): palette, and a chart per canvas with
-- animation off, so a screenshot taken at load shows the final drawing.
local JS_COMMON = [[
var D = JSON.parse(document.getElementById('moonfm-data').textContent);
var PALETTE = ['#1f77b4','#d62728','#2ca02c','#ff7f0e','#9467bd',
  '#8c564b','#e377c2','#17becf','#bcbd22','#7f7f7f'];
Chart.defaults.animation = false;
Chart.defaults.responsive = true;
Chart.defaults.maintainAspectRatio = false;
var drawn = 0;
function box(parent, title) {
  var d = document.createElement('div'); d.className = 'chart';
  var c = document.createElement('canvas'); d.appendChild(c);
  c.setAttribute('aria-label', title);
  document.getElementById(parent).appendChild(d);
  return c;
}
function chart(parent, title, cfg) {
  cfg.options = cfg.options || {};
  cfg.options.plugins = cfg.options.plugins || {};
  cfg.options.plugins.title = {display: true, text: title};
  new Chart(box(parent, title), cfg);
  drawn++;
}
]]

local JS_RUN = JS_COMMON .. [[
var i = 0;
D.metrics.forEach(function (m) {
  if (m.epochs.length === 0) return;
  var color = PALETTE[i++ % PALETTE.length];
  chart('curves', m.key + (m.kind === 'loss' ? ' (lower is better)'
                                              : ' (higher is better)'), {
    type: 'line',
    data: {labels: m.epochs, datasets: [{label: m.key, data: m.values,
      borderColor: color, backgroundColor: color, borderWidth: 3,
      pointRadius: 3}]},
    options: {scales: {x: {title: {display: true, text: 'epoch'}}}}
  });
});
document.body.setAttribute('data-charts', drawn);
]]

-- metrics_table(records) -> list of per-metric tables in first-use order:
-- {key, split, name, kind, epochs = {..}, values = {..}, final = v or nil}
function M.collect(records)
  local list, by = {}, {}
  for _, r in ipairs(records or {}) do
    local key = r.split .. ":" .. r.name
    local m = by[key]
    if not m then
      m = { key = key, split = r.split, name = r.name, kind = r.kind,
            epochs = M.array(), values = M.array() }
      by[key] = m
      list[#list + 1] = m
    end
    if r.epoch then
      m.epochs[#m.epochs + 1] = r.epoch
      m.values[#m.values + 1] = r.value
    else
      m.final = r.value
    end
  end
  return list
end

local function write(path, text)
  local ok, err = core.write_atomic(path, text)
  if not ok then return nil, err end
  return true
end

local RUN_OPTS = { metrics = true, hyperparameters = true, status = true,
                   recipe = true, title = true, reason = true,
                   seconds = true }

-- write_run(output_data_dir, opts) -> true | nil, msg
-- Writes <dir>/metrics.json and <dir>/report.html for one training run.
--   opts.metrics: the records the metric logger emitted, in order
--     (moonfm.metrics logger:records(): {epoch = e or nil for a final
--     value, split =, name =, kind = "score"|"loss", value =}); may be empty
--   opts.hyperparameters: the typed table (name -> value); may be nil
--   opts.status: "completed" (default), "stopped" or "failed"
--   opts.reason: the failure's first line, when failed (optional)
--   opts.recipe: the recipe's path (optional), opts.title (optional),
--   opts.seconds: the run's duration (optional)
-- Misuse raises; I/O problems return nil, msg (a report must never turn
-- a successful job into a failed one: log the message and go on).
function M.write_run(dir, opts)
  if type(dir) ~= "string" then error("write_run: dir must be a string", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if not RUN_OPTS[k] then
      error("write_run: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local metrics = M.collect(opts.metrics)
  local hps = {}
  for k, v in pairs(opts.hyperparameters or {}) do hps[tostring(k)] = v end
  local status = opts.status or "completed"
  local data = {
    status = status,
    recipe = opts.recipe,
    reason = opts.reason,
    seconds = opts.seconds,
    written = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    hyperparameters = hps,
    metrics = M.array(metrics),
  }
  local ok, err = write(dir .. "/metrics.json", M.json(data) .. "\n")
  if not ok then return nil, err end

  local title = opts.title or ("moonfm run" .. (opts.recipe and (": " ..
    opts.recipe:match("[^/]*$")) or ""))
  local b = {}
  b[#b + 1] = "<h1>" .. html_escape(title) .. "</h1>\n"
  b[#b + 1] = "<div class=\"sub\">status <b" ..
    (status == "failed" and " class=\"failed\"" or "") .. ">" ..
    html_escape(status) .. "</b>" ..
    (opts.seconds and string.format(", %.1f s", opts.seconds) or "") ..
    ", written " .. html_escape(data.written) ..
    (opts.recipe and ", recipe " .. html_escape(opts.recipe) or "") ..
    "</div>\n"
  if opts.reason then
    b[#b + 1] = "<p class=\"note\">" .. html_escape(opts.reason) .. "</p>\n"
  end
  b[#b + 1] = "<h2>Learning curves</h2>\n<div class=\"charts\" " ..
    "id=\"curves\"></div>\n"
  local any = false
  for _, m in ipairs(metrics) do if #m.epochs > 0 then any = true end end
  if not any then
    b[#b + 1] = "<p>No per-epoch metrics were reported.</p>\n"
  end
  b[#b + 1] = "<h2>Final metrics</h2>\n<table><tr><th>metric</th><th>kind" ..
    "</th><th>final</th><th>best epoch</th><th>epochs</th></tr>\n"
  for _, m in ipairs(metrics) do
    local best, be
    for i, v in ipairs(m.values) do
      if not best or (m.kind == "loss" and v < best) or
         (m.kind ~= "loss" and v > best) then best, be = v, m.epochs[i] end
    end
    local final = m.final or m.values[#m.values]
    b[#b + 1] = string.format("<tr><td>%s</td><td>%s</td><td class=\"n\">"
      .. "%s</td><td class=\"n\">%s</td><td class=\"n\">%d</td></tr>\n",
      html_escape(m.key), m.kind, final and fmt(final) or "-",
      be and (be .. " (" .. fmt(best) .. ")") or "-", #m.epochs)
  end
  b[#b + 1] = "</table>\n<h2>Hyperparameters</h2>\n<table>" ..
    "<tr><th>name</th><th>value</th></tr>\n"
  local names = {}
  for k in pairs(hps) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    b[#b + 1] = "<tr><td>" .. html_escape(k) .. "</td><td>" ..
      html_escape(fmt(hps[k])) .. "</td></tr>\n"
  end
  b[#b + 1] = "</table>\n"
  return write(dir .. "/report.html",
               page(title, table.concat(b), data, JS_RUN))
end

---------------------------------------------------------------------------
-- Sweep report

local JS_SWEEP = JS_COMMON .. [[
var obj = D.objective.metric;
var ranked = D.trials.filter(function (t) { return t.objective !== null; });
var curves = [];
D.trials.forEach(function (t, i) {
  if (!t.curve || t.curve.length === 0) return;
  var top = t.rank !== null && t.rank <= 10;
  var color = top ? PALETTE[(t.rank - 1) % PALETTE.length] : '#c8c8c8';
  curves.push({label: 'trial ' + t.trial, borderColor: color,
    backgroundColor: color, borderWidth: top ? 2 : 1, pointRadius: 1,
    data: t.curve.map(function (v, e) { return {x: e + 1, y: v}; })});
});
if (curves.length > 0) {
  chart('curves', obj + ' per epoch, every trial', {type: 'line',
    data: {datasets: curves}, options: {parsing: false,
      plugins: {legend: {display: curves.length <= 12}},
      scales: {x: {type: 'linear', ticks: {precision: 0},
                   title: {display: true, text: 'epoch'}},
               y: {title: {display: true, text: obj}}}}});
}
D.names.forEach(function (name, i) {
  var numeric = ranked.every(function (t) {
    return typeof t.hyperparameters[name] === 'number'; });
  var pts = ranked.map(function (t) {
    return {x: numeric ? t.hyperparameters[name]
                       : String(t.hyperparameters[name]), y: t.objective}; });
  if (pts.length === 0) return;
  var color = PALETTE[i % PALETTE.length];
  var x = numeric ? {type: D.log[name] ? 'logarithmic' : 'linear'}
    : {type: 'category', labels: Array.from(new Set(pts.map(
        function (p) { return p.x; }))).sort(), offset: true};
  x.title = {display: true, text: name};
  chart('params', obj + ' against ' + name, {type: numeric ? 'scatter'
                                                           : 'line',
    data: {datasets: [{label: obj, data: pts, showLine: false,
      borderColor: color, backgroundColor: color, pointRadius: 6}]},
    options: {plugins: {legend: {display: false}},
      scales: {x: x, y: {title: {display: true, text: obj}}}}});
});
document.body.setAttribute('data-charts', drawn);
]]

-- write_sweep(dir, data) -> true | nil, msg: <dir>/report.html.
--   data.title, data.objective = {metric =, maximize =}, data.names (the
--   hyperparameter names of the space, sorted), data.log = {name = true}
--   for log-scaled parameters, data.trials: ranked trial records (see
--   moonfm.sweep_results), data.best = trial record or nil,
--   data.best_dir = path or nil.
function M.write_sweep(dir, data)
  local res = require "moonfm.sweep_results"
  local obj = data.objective
  local trials = {}
  for i, r in ipairs(data.trials) do
    local curve = M.array()
    for e = 1, r.epochs or 0 do
      curve[e] = r.curve and r.curve[e] or M.null
    end
    trials[i] = { trial = r.trial, status = r.status,
                  rank = r.objective ~= nil and i or nil,
                  objective = r.objective, hyperparameters = r.hyperparameters,
                  curve = curve }
  end
  local payload = { objective = { metric = obj.metric,
                                  maximize = obj.maximize },
                    names = M.array(data.names), log = data.log or {},
                    trials = M.array(trials) }
  local title = data.title or "moonfm sweep"
  local b = {}
  b[#b + 1] = "<h1>" .. html_escape(title) .. "</h1>\n"
  b[#b + 1] = string.format("<div class=\"sub\">objective <b>%s</b> (%s), "
    .. "%d trials, written %s</div>\n", html_escape(obj.metric),
    obj.maximize and "maximize" or "minimize", #data.trials,
    os.date("!%Y-%m-%dT%H:%M:%SZ"))
  if data.best then
    b[#b + 1] = string.format("<p>Best: trial <b>%d</b>, %s = <b>%s</b>%s"
      .. "</p>\n", data.best.trial, html_escape(obj.metric),
      res.num(data.best.objective), data.best_dir and
      (", model kept in " .. html_escape(data.best_dir)) or "")
  else
    b[#b + 1] = "<p class=\"note\">No trial completed.</p>\n"
  end
  b[#b + 1] = "<h2>Leaderboard</h2>\n<table><tr><th>rank</th><th>trial" ..
    "</th><th>status</th><th>" .. html_escape(obj.metric) .. "</th>"
  for _, n in ipairs(data.names) do
    b[#b + 1] = "<th>" .. html_escape(n) .. "</th>"
  end
  b[#b + 1] = "<th>epochs</th><th>seconds</th><th>note</th></tr>\n"
  for i, r in ipairs(data.trials) do
    local cls = (data.best and r.trial == data.best.trial) and " class=\"best\""
      or (r.status == "failed" and " class=\"failed\"" or "")
    b[#b + 1] = string.format("<tr%s><td class=\"n\">%s</td><td class=\"n\">"
      .. "%d</td><td>%s</td><td class=\"n\">%s</td>", cls,
      r.objective ~= nil and tostring(i) or "-", r.trial, r.status,
      r.objective ~= nil and res.num(r.objective) or "-")
    for _, n in ipairs(data.names) do
      b[#b + 1] = "<td>" .. html_escape(fmt(r.hyperparameters[n] or "")) ..
        "</td>"
    end
    local note = r.reason or (r.stopped_at and ("median rule at epoch " ..
      r.stopped_at)) or ""
    b[#b + 1] = string.format("<td class=\"n\">%d</td><td class=\"n\">%.1f"
      .. "</td><td>%s</td></tr>\n", r.epochs or 0, r.seconds or 0,
      html_escape(note))
  end
  b[#b + 1] = "</table>\n<h2>Learning curves</h2>\n<div class=\"charts\" " ..
    "id=\"curves\"></div>\n<h2>Objective against each hyperparameter</h2>\n" ..
    "<div class=\"charts\" id=\"params\"></div>\n"
  return write(dir .. "/report.html",
               page(title, table.concat(b), payload, JS_SWEEP))
end

return M
