-- moonfm.metrics: spec rules 100-108 and conformance test T10.
local metrics = require "moonfm.metrics"
local errors = require "moonfm.errors"
local cjson = require "cjson"

-- A stand-in for io.stdout that records lines and flushes.
local function sink()
  local s = { text = "", flushes = 0, lines = {} }
  function s:write(...)
    for _, x in ipairs { ... } do self.text = self.text .. x end
  end
  function s:flush()
    self.flushes = self.flushes + 1
    for l in self.text:gmatch("[^\n]+") do self.lines[#self.lines + 1] = l end
    self.text = ""
  end
  return s
end

local function logger(opts)
  local out = sink()
  local warnings = {}
  local o = { host = "algo-1", out = out,
              warn = function(m) warnings[#warnings + 1] = m end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return metrics.new(o), out, warnings
end

-- The regexes we emit use only literal characters, escaped punctuation and
-- \S+; this turns them into the equivalent Lua pattern.
local function lua_pattern(re)
  local out, i = {}, 1
  while i <= #re do
    local c = re:sub(i, i)
    if c == "\\" then
      local n = re:sub(i + 1, i + 1)
      out[#out + 1] = (n == "S") and "%S" or ("%" .. n)
      i = i + 2
    else
      if c == "(" or c == ")" or c == "+" then out[#out + 1] = c
      elseif c:find("%p") then out[#out + 1] = "%" .. c
      else out[#out + 1] = c end
      i = i + 1
    end
  end
  return table.concat(out)
end

local function count_lua(lines, re)
  local n, values = 0, {}
  local pat = lua_pattern(re)
  for _, l in ipairs(lines) do
    local v = l:match(pat)
    if v then n = n + 1; values[#values + 1] = v end
  end
  return n, values
end

-- grep -P (PCRE) when this grep has it, else nil.
local function count_grep(lines, re)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local p = io.popen("grep -cP '" .. re .. "' " .. path .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  os.remove(path)
  return tonumber(out:match("^(%d+)"))
end

describe("moonfm.metrics", function()
  describe("lines (rules 100, 102, 103)", function()
    it("formats per-epoch and final lines", function()
      local m, out = logger()
      assert.are.equal(
        "#quality_metric: host=algo-1, epoch=3, validation ndcg@10 <score>=0.4127",
        m:epoch(3, "validation", "ndcg@10", 0.4127, "score"))
      assert.are.equal(
        "#quality_metric: host=algo-1, test rmse <loss>=1.5",
        m:final("test", "rmse", 1.5, "loss"))
      assert.are.same({
        "#quality_metric: host=algo-1, epoch=3, validation ndcg@10 <score>=0.4127",
        "#quality_metric: host=algo-1, test rmse <loss>=1.5" }, out.lines)
      assert.are.equal(2, out.flushes)
      assert.are.equal("", out.text)
    end)

    it("uses %.9g", function()
      local m, out = logger()
      m:final("test", "a", 1 / 3, "score")
      m:final("test", "b", 1e-10, "score")
      m:final("test", "c", 3, "score")
      m:final("test", "d", 123456789012, "score")
      m:final("test", "e", -0.41270000001, "loss")
      assert.are.same({
        "#quality_metric: host=algo-1, test a <score>=0.333333333",
        "#quality_metric: host=algo-1, test b <score>=1e-10",
        "#quality_metric: host=algo-1, test c <score>=3",
        "#quality_metric: host=algo-1, test d <score>=1.23456789e+11",
        "#quality_metric: host=algo-1, test e <loss>=-0.4127" }, out.lines)
      assert.are.equal("0.1", metrics.format_value(0.1))
    end)

    it("skips non-finite values with a warning", function()
      local m, out, warnings = logger()
      assert.is_nil(m:epoch(0, "validation", "auc", 0 / 0, "score"))
      assert.is_nil(m:final("validation", "auc", math.huge, "score"))
      assert.is_nil(m:final("validation", "auc", -math.huge, "score"))
      assert.are.same({}, out.lines)
      assert.are.equal(3, #warnings)
      assert.matches("validation:auc at epoch 0", warnings[1], 1, true)
      assert.are.same({}, m:records())
    end)

    it("validates names, splits, kinds, epochs and values (rule 101)", function()
      local m = logger()
      for _, bad in ipairs { "ndcg 10", "a,b", "a=b", "", string.rep("n", 65),
                             "é", "a\n" } do
        assert.has_error(function() m:final("test", bad, 1, "score") end)
        assert.has_error(function() m:final(bad, "x", 1, "score") end)
      end
      assert.has_no_error(function()
        m:final("test", string.rep("n", 64), 1, "score")
        m:final("te-st_1", "a.b:c@5-x_Y", 1, "score")
      end)
      assert.has_error(function() m:final("test", "x", 1, "higher") end)
      local ok1, e1 = pcall(function() m:final("test", "a b", 1, "score") end)
      assert.is_false(ok1)
      assert.matches("metrics_spec.lua", e1, 1, true)
      assert.has_error(function() m:final("test", "x", "1", "score") end)
      assert.has_error(function() m:epoch(-1, "test", "x", 1, "score") end)
      assert.has_error(function() m:epoch(1.5, "test", "x", 1, "score") end)
      m:final("test", "y", 1, "score")
      local ok, e = pcall(function() m:final("test", "y", 1, "loss") end)
      assert.is_false(ok)
      assert.matches("keeps one kind", e, 1, true)
      assert.matches("metrics_spec.lua", e, 1, true) -- the caller's line
    end)

    it("rejects a bad constructor call", function()
      assert.has_error(function() metrics.new {} end)
      assert.has_error(function() metrics.new { host = "a b" } end)
      assert.has_error(function() metrics.new { host = "a,b" } end)
      assert.has_error(function() metrics.new { host = "a", colour = 1 } end)
      assert.has_error(function() metrics.new { host = "a", leader = 1 } end)
    end)
  end)

  describe("limits and hosts (rules 106, 108)", function()
    it("raises a RecipeError at the 41st distinct name", function()
      local m = logger()
      for i = 1, 40 do m:epoch(0, "validation", "m" .. i, i, "score") end
      -- names already seen stay allowed
      m:final("validation", "m1", 1, "score")
      local ok, e = pcall(m.final, m, "validation", "m41", 1, "score")
      assert.is_false(ok)
      assert.is_true(errors.is(e))
      assert.are.equal("RecipeError", e.category)
      assert.matches("validation:m41 would be metric number 41", e.message, 1, true)
      assert.matches("at most 40", e.message, 1, true)
      -- the same split with another name, or another split, count
      local m2 = logger { max_names = 2 }
      m2:final("train", "loss", 1, "loss")
      m2:final("validation", "loss", 1, "loss")
      assert.has_error(function() m2:final("test", "loss", 1, "loss") end)
    end)

    it("prints nothing on non-leaders but still records", function()
      local m, out = logger { host = "algo-2", leader = false }
      assert.is_nil(m:epoch(1, "validation", "auc", 0.5, "score"))
      assert.is_nil(m:final("validation", "auc", 0.5, "score"))
      assert.are.same({}, out.lines)
      assert.are.equal(2, #m:records())
      m:progress(1, 2)
      assert.are.same({ "#progress_metric: host=algo-2, completed 50 % of epochs" },
                      out.lines)
    end)
  end)

  describe("progress (rule 105)", function()
    it("prints the share of epochs completed", function()
      local m, out = logger()
      m:progress(1, 3)
      m:progress(3, 3)
      m:progress(0, 3)
      m:progress(1, 8)
      assert.are.same({
        "#progress_metric: host=algo-1, completed 33.33 % of epochs",
        "#progress_metric: host=algo-1, completed 100 % of epochs",
        "#progress_metric: host=algo-1, completed 0 % of epochs",
        "#progress_metric: host=algo-1, completed 12.5 % of epochs" }, out.lines)
      assert.has_error(function() m:progress(4, 3) end)
      assert.has_error(function() m:progress(1, 0) end)
    end)
  end)

  describe("records and summary", function()
    it("remembers everything emitted", function()
      local m = logger()
      m:epoch(0, "validation", "ndcg@10", 0.1, "score")
      m:epoch(1, "validation", "ndcg@10", 0.2, "score")
      m:epoch(1, "train", "loss", 2.5, "loss")
      m:final("validation", "ndcg@10", 0.2, "score")
      local r = m:records()
      assert.are.equal(4, #r)
      assert.are.same({ epoch = 1, split = "train", name = "loss", kind = "loss",
                        value = 2.5 }, r[3])
      local s = m:summary()
      assert.are.same({ split = "validation", name = "ndcg@10", kind = "score",
        final = 0.2, epochs = { { epoch = 0, value = 0.1 }, { epoch = 1, value = 0.2 } } },
        s["validation:ndcg@10"])
      assert.is_nil(s["train:loss"].final)
      assert.are.same({ { split = "validation", name = "ndcg@10", kind = "score" },
                        { split = "train", name = "loss", kind = "loss" } },
                      m:metrics())
    end)
  end)

  describe("definitions (rule 107)", function()
    it("escapes regex metacharacters", function()
      assert.are.equal("ndcg@10\\.x\\<\\>\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$\\\\-:",
                       metrics.regex_escape("ndcg@10.x<>()[]{}*+?|^$\\-:"))
      local final, epoch = metrics.regexes("validation", "ndcg@10", "score")
      assert.are.equal("#quality_metric: host=\\S+, validation ndcg@10 \\<score\\>=(\\S+)",
                       final)
      assert.are.equal(
        "#quality_metric: host=\\S+, epoch=\\S+, validation ndcg@10 \\<score\\>=(\\S+)",
        epoch)
    end)

    it("gives a JSON list of Name and Regex", function()
      local text = metrics.definitions {
        { split = "validation", name = "ndcg@10", kind = "score" },
        { split = "train", name = "loss", kind = "loss", per_epoch = false },
        { split = "validation", name = "ndcg@10", kind = "score" },
      }
      local defs = cjson.decode(text)
      assert.are.same({
        { Name = "validation:ndcg@10",
          Regex = "#quality_metric: host=\\S+, validation ndcg@10 \\<score\\>=(\\S+)" },
        { Name = "validation:ndcg@10:epoch",
          Regex = "#quality_metric: host=\\S+, epoch=\\S+, validation ndcg@10 \\<score\\>=(\\S+)" },
        { Name = "train:loss",
          Regex = "#quality_metric: host=\\S+, train loss \\<loss\\>=(\\S+)" },
      }, defs)
      assert.matches('^%[\n  {"Name": "validation:ndcg@10", "Regex": ', text)
      assert.are.equal("[]", metrics.definitions {})
      assert.has_error(function()
        metrics.definitions { { split = "a", name = "x", kind = "score" },
                              { split = "a", name = "x", kind = "loss" } }
      end)
      assert.has_error(function()
        metrics.definitions { { split = "a b", name = "x", kind = "score" } }
      end)
    end)

    it("keeps within 40 definitions, 255-character names and 500-character regexes", function()
      local list = {}
      for i = 1, 21 do
        list[i] = { split = "validation", name = "m" .. i, kind = "score" }
      end
      assert.has_error(function() metrics.definitions(list) end)
      local defs = cjson.decode(metrics.definitions(list, { per_epoch = false }))
      assert.are.equal(21, #defs)
      local long = string.rep(".", 64)
      local final, epoch = metrics.regexes(long, long, "score")
      assert.is_true(#epoch <= 500 and #final <= 500)
    end)

    it("T10: a 3-epoch run matches its definitions exactly", function()
      local m, out = logger()
      for e = 1, 3 do
        m:epoch(e, "validation", "ndcg@10", 0.1 * e, "score")
        m:epoch(e, "validation", "ndcg@100", 0.5 * e, "score")
        m:epoch(e, "train", "loss", 1 / e, "loss")
        m:progress(e, 3)
      end
      m:final("validation", "ndcg@10", 0.3, "score")
      m:final("validation", "ndcg@100", 1.5, "score")
      m:final("test", "ndcg@10", 0.25, "score")
      m:final("train", "loss", 1 / 3, "loss")
      local defs = cjson.decode(metrics.definitions(m:metrics()))
      local by_name = {}
      for _, d in ipairs(defs) do by_name[d.Name] = d.Regex end
      local function check(name, want, want_values)
        local n, values = count_lua(out.lines, by_name[name])
        assert.are.equal(want, n, name)
        for i, v in ipairs(values) do
          local x = tonumber(v)
          assert.is_number(x)
          assert.is_true(x == x and x ~= math.huge and x ~= -math.huge)
          if want_values then assert.are.equal(want_values[i], v) end
        end
        local g = count_grep(out.lines, by_name[name])
        if g then assert.are.equal(want, g, "grep -P " .. name) end
      end
      check("validation:ndcg@10:epoch", 3, { "0.1", "0.2", "0.3" })
      check("validation:ndcg@10", 1, { "0.3" })
      check("validation:ndcg@100:epoch", 3)
      check("validation:ndcg@100", 1, { "1.5" })
      check("test:ndcg@10", 1, { "0.25" })
      check("test:ndcg@10:epoch", 0)
      check("train:loss:epoch", 3, { "1", "0.5", "0.333333333" })
      check("train:loss", 1, { "0.333333333" })
    end)
  end)

  describe("parse_line", function()
    it("reads back what the logger prints", function()
      local m = logger()
      local l1 = m:epoch(7, "validation", "ndcg@10", 0.4127, "score")
      local l2 = m:final("test", "rmse", 1e-10, "loss")
      assert.are.same({ type = "quality", host = "algo-1", epoch = 7,
        split = "validation", name = "ndcg@10", kind = "score", value = 0.4127 },
        metrics.parse_line(l1))
      assert.are.same({ type = "quality", host = "algo-1", split = "test",
        name = "rmse", kind = "loss", value = 1e-10 }, metrics.parse_line(l2 .. "\n"))
      assert.are.same({ type = "progress", host = "algo-1", percent = 12.5 },
        metrics.parse_line(m:progress(1, 8)))
      for _, bad in ipairs { "", "hello", "#quality_metric: host=a, x y <best>=1",
                             "#quality_metric: host=a, x y <score>=nan",
                             " #quality_metric: host=a, x y <score>=1" } do
        assert.is_nil(metrics.parse_line(bad))
      end
    end)
  end)
end)
