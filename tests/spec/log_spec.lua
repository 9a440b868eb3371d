-- moonfm.log: levels, threshold, timestamps, no CR or ESC (rules 49, 82, 83).
local lfs = require "lfs"
local core = require "moonfm.core"
local log = require "moonfm.log"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local path = string.format("%s/log-%d.txt", root, core.getpid())

-- Runs fn with io.stderr sent to a file; returns the lines written.
local function capture(fn)
  local f = assert(io.open(path, "w+b"))
  local saved = io.stderr
  io.stderr = f
  local ok, e = pcall(fn)
  io.stderr = saved
  f:close()
  local r = assert(io.open(path, "rb"))
  local text = r:read("a")
  r:close()
  os.remove(path)
  if not ok then error(e, 0) end
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines, text
end

local STAMP = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ "

local function all_levels()
  log.debug("d")
  log.info("i")
  log.warn("w")
  log.error("e")
end

local function names(lines)
  local out = {}
  for i, l in ipairs(lines) do out[i] = l:gsub(STAMP, "") end
  return out
end

describe("moonfm.log", function()
  after_each(function() log.set_level(20) end)

  it("logs info and above by default", function()
    log.set_level(nil)
    assert.same({ "INFO i", "WARNING w", "ERROR e" },
                names(capture(all_levels)))
  end)

  it("takes level names and Python numeric levels", function()
    for level, want in pairs {
      debug = { "DEBUG d", "INFO i", "WARNING w", "ERROR e" },
      warning = { "WARNING w", "ERROR e" },
      error = { "ERROR e" },
      [10] = { "DEBUG d", "INFO i", "WARNING w", "ERROR e" },
      ["30"] = { "WARNING w", "ERROR e" },
      [35] = { "ERROR e" },
      [50] = {},
      ["nonsense"] = { "INFO i", "WARNING w", "ERROR e" },
    } do
      log.set_level(level)
      assert.same(want, names(capture(all_levels)), tostring(level))
    end
  end)

  it("stamps lines with ISO-8601 UTC time to the millisecond", function()
    local before = os.time()
    local lines = capture(function() log.info("hello %d", 7) end)
    local after = os.time()
    assert.equals(1, #lines)
    assert.matches(STAMP .. "INFO hello 7$", lines[1])
    local got = lines[1]:match("^(%S+)%.%d%d%dZ")
    local function utc(x) return os.date("!%Y-%m-%dT%H:%M:%S", x) end
    assert.is_true(got >= utc(before) and got <= utc(after))
  end)

  it("formats with arguments, prints a lone message as is", function()
    local lines = capture(function()
      log.info("100%")
      log.warn("%s=%q", "k", "v")
      log.info({})
    end)
    assert.matches(" INFO 100%%$", lines[1])
    assert.matches(' WARNING k="v"$', lines[2])
    assert.matches(" INFO table: ", lines[3])
  end)

  it("never writes carriage returns or ESC characters", function()
    local _, text = capture(function()
      log.info("progress 10%\r\27[2Kprogress 20%")
      log.error("%s", "red \27[31mtext\27[0m\r\n")
    end)
    assert.is_nil(text:find("\r", 1, true))
    assert.is_nil(text:find("\27", 1, true))
    assert.matches("INFO progress 10%[2Kprogress 20%\n", text, 1, true)
    assert.matches("ERROR red [31mtext[0m\n", text, 1, true)
  end)
end)
