-- moonfm.failure: the failure file (spec section 9), its UTF-8 cut and
-- sanitising, checked against plain references written here.
local lfs = require "lfs"
local core = require "moonfm.core"
local failure = require "moonfm.failure"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local tmp = string.format("%s/failure-%d", root, core.getpid())

local function sh(cmd) assert(os.execute(cmd)) end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

-- Runs fn with io.stderr sent to a file; returns what was written.
local function capture_stderr(fn)
  local path = tmp .. "/stderr"
  local f = assert(io.open(path, "w+b"))
  local saved = io.stderr
  io.stderr = f
  local ok, e = pcall(fn)
  io.stderr = saved
  f:close()
  if not ok then error(e, 0) end
  return slurp(path)
end

-- Reference cut: the longest prefix of whole characters of at most
-- limit - 3 bytes, then "...".
local function reference_truncate(s, limit)
  if #s <= limit then return s end
  local best = 0
  for p in utf8.codes(s) do
    if p - 1 <= limit - 3 then best = p - 1 end
  end
  if #s <= limit - 3 then best = #s end
  return s:sub(1, best) .. "..."
end

local n = 0
local function outdir(with_data)
  n = n + 1
  local d = string.format("%s/o%d", tmp, n)
  sh("mkdir -p '" .. d .. (with_data and "/data'" or "'"))
  return d
end

describe("moonfm.failure", function()
  setup(function() sh("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'") end)
  teardown(function() sh("rm -rf '" .. tmp .. "'") end)

  it("truncate: texts within the limit are unchanged, exact limit too",
     function()
    assert.equals("abc", failure.truncate("abc", 10))
    local s = string.rep("x", 10)
    assert.equals(s, failure.truncate(s, 10))
    assert.equals(string.rep("y", 1024),
                  failure.truncate(string.rep("y", 1024)))
  end)

  it("truncate: one byte over cuts to limit - 3 bytes plus ...", function()
    local s = string.rep("x", 11)
    assert.equals("xxxxxxx...", failure.truncate(s, 10))
    local long = string.rep("z", 1025)
    local t = failure.truncate(long)
    assert.equals(1024, #t)
    assert.equals(string.rep("z", 1021) .. "...", t)
  end)

  it("truncate: cuts at a character boundary for 2-, 3- and 4-byte "
     .. "characters", function()
    -- "é" is 2 bytes, "€" 3, "😀" 4.
    assert.equals("ééé...", failure.truncate(string.rep("é", 10), 10))
    assert.equals("€€...", failure.truncate(string.rep("€", 10), 10))
    assert.equals("😀...", failure.truncate(string.rep("😀", 10), 10))
    assert.equals("a...", failure.truncate("a😀😀", 7))
  end)

  it("truncate: matches the reference cut for every limit", function()
    local s = "aé€😀b" .. string.rep("€é😀x", 5)
    for limit = 4, #s + 1 do
      local got = failure.truncate(s, limit)
      assert.equals(reference_truncate(s, limit), got)
      assert.is_true(#got <= limit)
      assert.is_truthy(utf8.len(got))
      if #s > limit then assert.equals("...", got:sub(-3)) end
    end
  end)

  it("sanitize: valid UTF-8 is unchanged", function()
    for _, s in ipairs { "", "plain", "aé€😀b", "tab\tnew\nline" } do
      assert.equals(s, failure.sanitize(s))
    end
  end)

  it("sanitize: each invalid byte becomes ?, valid characters stay",
     function()
    assert.equals("a?b", failure.sanitize("a\255b"))
    assert.equals("é?x", failure.sanitize("é\128x"))
    assert.equals("??", failure.sanitize("\226\130")) -- cut "€"
    assert.equals("€??", failure.sanitize("€\226\130"))
    assert.equals("??q", failure.sanitize("\192\175q")) -- overlong "/"
    assert.equals("???z", failure.sanitize("\237\160\128z")) -- surrogate
    -- Above U+10FFFF: four bytes, four "?".
    assert.equals("ok ????😀", failure.sanitize("ok \244\144\128\128😀"))
    assert.is_truthy(utf8.len(failure.sanitize("\255\254\253é\128")))
  end)

  it("text: first line <Category>: <summary> without newlines, then details",
     function()
    assert.equals("DataError: bad row in train",
                  failure.text("DataError", "bad row in train"))
    assert.equals("DataError: bad row in train",
                  failure.text("DataError", "bad row in train", ""))
    local t = failure.text("ConfigError", "line one\r\nline two\nthree",
                           "details\nmore")
    assert.equals("ConfigError: line one line two three\ndetails\nmore", t)
    assert.equals("RecipeError: x?y", failure.text("RecipeError", "x\255y"))
  end)

  it("report: writes the failure, the full text and stderr", function()
    local d = outdir(true)
    local text
    local err = capture_stderr(function()
      text = failure.report(d, "DataError", "channel 'train' is empty",
                            "Put files in it.")
    end)
    assert.equals("DataError: channel 'train' is empty\nPut files in it.", text)
    assert.equals(text .. "\n", err)
    assert.equals(text .. "\n", slurp(d .. "/failure"))
    assert.equals(text .. "\n", slurp(d .. "/data/failure-full.txt"))
  end)

  it("report: the failure file is at most 1024 bytes with its newline",
     function()
    local d = outdir(true)
    local details = string.rep("détails €😀 ", 400)
    local text
    local err = capture_stderr(function()
      text = failure.report(d, "RecipeError", "boom", details)
    end)
    local f = slurp(d .. "/failure")
    assert.is_true(#f <= 1024)
    assert.equals("\n", f:sub(-1))
    assert.equals("...\n", f:sub(-4))
    assert.is_truthy(utf8.len(f))
    assert.equals(reference_truncate(text, 1023) .. "\n", f)
    -- The full text is kept elsewhere.
    assert.equals(text .. "\n", slurp(d .. "/data/failure-full.txt"))
    assert.equals(text .. "\n", err)
    assert.is_true(#text > 4000)
  end)

  it("report: a text of exactly 1023 bytes is written whole", function()
    local d = outdir(false)
    local summary = string.rep("s", 1023 - #"DataError: ")
    capture_stderr(function() failure.report(d, "DataError", summary) end)
    local f = slurp(d .. "/failure")
    assert.equals(1024, #f)
    assert.equals("DataError: " .. summary .. "\n", f)
    -- No data/ folder: no full copy.
    assert.is_nil(lfs.attributes(d .. "/data/failure-full.txt"))
  end)

  it("report: never overwrites an existing failure file", function()
    local d = outdir(true)
    spit(d .. "/failure", "RecipeError: the recipe's own words\n")
    capture_stderr(function()
      failure.report(d, "DataError", "later failure")
    end)
    assert.equals("RecipeError: the recipe's own words\n",
                  slurp(d .. "/failure"))
    assert.equals("DataError: later failure\n",
                  slurp(d .. "/data/failure-full.txt"))
  end)

  it("report: removes a success file", function()
    local d = outdir(false)
    spit(d .. "/success", "")
    capture_stderr(function() failure.report(d, "InternalError", "bug") end)
    assert.is_nil(lfs.attributes(d .. "/success"))
    assert.equals("InternalError: bug\n", slurp(d .. "/failure"))
  end)

  it("report: without an output folder only stderr gets the text", function()
    local err = capture_stderr(function()
      assert.equals("ConfigError: x", failure.report(nil, "ConfigError", "x"))
      failure.report(tmp .. "/absent", "ConfigError", "y")
    end)
    assert.equals("ConfigError: x\nConfigError: y\n", err)
    assert.is_nil(lfs.attributes(tmp .. "/absent"))
  end)
end)
