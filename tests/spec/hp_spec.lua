-- moonfm.hp: spec rules 28-43 and conformance tests T1, T2.
local hp = require "moonfm.hp"
local smenv = require "moonfm.smenv"
local errors = require "moonfm.errors"

describe("the interpreter", function()
  it("is Lua 5.4", function()
    assert.are.equal("Lua 5.4", _VERSION)
    local closed = false
    do
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
    end
    assert.is_true(closed)
  end)
end)

local function tmpfile(content)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

-- Catch a raised error object.
local function catch(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

local function mtype(v)
  return type(v) == "number" and math.type(v) or type(v)
end

describe("moonfm.hp", function()
  describe("T1 decode table (rules 31-38, 53)", function()
    local E = {} -- "error" in the table
    -- raw, untyped, untyped type, int, float, bool, SM_HP_*
    local rows = {
      { "0.1", 0.1, "float", E, 0.1, E, "0.1" },
      { '"0.1"', "0.1", "string", E, 0.1, E, "0.1" },
      { "64", 64, "integer", 64, 64.0, E, "64" },
      { '"64"', "64", "string", 64, 64.0, E, "64" },
      { "64.0", 64.0, "float", 64, 64.0, E, "64.0" },
      { "007", "007", "string", 7, 7.0, E, "007" },
      { "1e-3", 0.001, "float", E, 0.001, E, "0.001" },
      { "true", true, "boolean", E, E, true, "true" },
      { "True", "True", "string", E, E, true, "True" },
      { "NaN", "NaN", "string", E, E, E, "NaN" },
      { "adam", "adam", "string", E, E, E, "adam" },
      { '"adam"', "adam", "string", E, E, E, "adam" },
      { "[1,2]", { 1, 2 }, "table", E, E, E, "[1,2]" },
      { "null", hp.null, "userdata", E, E, E, "" },
    }
    for _, r in ipairs(rows) do
      local raw = r[1]
      it("row " .. raw, function()
        local v, is_json = hp.decode(raw)
        assert.are.same(r[2], v)
        assert.are.equal(r[3], mtype(v))
        assert.are.equal(r[3] ~= "string" or raw:sub(1, 1) == '"', is_json)
        for col, ty in ipairs { "int", "float", "bool" } do
          local want = r[3 + col]
          local got, why = hp.coerce(raw, { type = ty })
          if want == E then
            assert.is_nil(got, ty .. " should fail")
            assert.is_string(why)
          else
            assert.are.equal(want, got)
            if ty == "int" then assert.are.equal("integer", math.type(got)) end
            if ty == "float" then assert.are.equal("float", math.type(got)) end
          end
        end
        assert.are.equal(r[7], smenv.hp_text(raw))
      end)
    end
  end)

  describe("decode (rule 31)", function()
    it("allows surrounding whitespace", function()
      assert.are.equal(5, hp.decode(" 5 "))
      assert.are.equal("integer", math.type(hp.decode("\t\n5\r ")))
      assert.are.equal("x", hp.decode(' "x" '))
    end)

    it("keeps what is not strict JSON as the raw string", function()
      for _, s in ipairs { "Infinity", "-Infinity", "nan", "0x10", "5.",
                           ".5", "-.5", "1.e3", "+1", "01", "-", "1 2",
                           "[1,]", '{"a":1,}', "'a'", "tru", "True", "",
                           '"a\tb"', '"\\x"', "[1] x", '{"a" 1}', "1e",
                           '"\\ud800"' } do
        local v, is_json = hp.decode(s)
        assert.are.equal(s, v)
        assert.is_false(is_json, s)
      end
    end)

    it("decodes numbers like Python (integers stay integers)", function()
      assert.are.equal("integer", math.type(hp.decode("-0")))
      assert.are.equal(0, hp.decode("-0"))
      assert.are.equal("float", math.type(hp.decode("1E2")))
      assert.are.equal(-2.5e-3, hp.decode("-2.5e-3"))
      assert.are.equal(math.huge, hp.decode("1e999"))
      assert.are.equal(math.maxinteger, hp.decode("9223372036854775807"))
      assert.are.equal("float", math.type(hp.decode("9223372036854775808")))
      local big = hp.decode("123456789012345678901", { bigint = "text" })
      assert.are.equal("123456789012345678901", tostring(big))
    end)

    it("decodes nested values, escapes and marks arrays and objects", function()
      local v = hp.decode('{"b": [1, {"c": null}], "a": "\\u00e9\\n", "e": {}, "f": []}')
      assert.are.equal("é\n", v.a)
      assert.are.equal(1, v.b[1])
      assert.are.equal(hp.null, v.b[2].c)
      assert.are.equal(hp.object_mt, getmetatable(v.e))
      assert.are.equal(hp.array_mt, getmetatable(v.f))
      assert.are.equal("😀", hp.decode('"\\ud83d\\ude00"'))
    end)

    it("rejects deep nesting without crashing", function()
      local s = string.rep("[", 10000) .. string.rep("]", 10000)
      assert.are.equal(s, hp.decode(s))
      local ok = string.rep("[", 50) .. string.rep("]", 50)
      assert.are.equal("table", type(hp.decode(ok)))
    end)

    it("json_decode reports line and column", function()
      local v, msg = hp.json_decode('{\n  "a": 1,\n  "b": tru\n}')
      assert.is_nil(v)
      assert.matches("line 3, column 8", msg, 1, true)
    end)
  end)

  describe("unquote (rule 32)", function()
    it("removes one level of JSON string quoting", function()
      assert.are.equal("0.1", hp.unquote('"0.1"'))
      assert.are.equal('"x"', hp.unquote('"\\"x\\""'))
      assert.are.equal("0.1", hp.unquote("0.1"))
      assert.are.equal("a b", hp.unquote('  "a b"  '))
      assert.are.equal(' 7 ', hp.unquote(' 7 '))
      assert.are.equal('"a" "b"', hp.unquote('"a" "b"'))
      assert.are.equal('"open', hp.unquote('"open'))
      local v, was = hp.unquote('"x"')
      assert.are.equal("x", v)
      assert.is_true(was)
      assert.is_false(select(2, hp.unquote("x")))
    end)
  end)

  describe("int (rule 33)", function()
    local function int(s) return hp.coerce(s, { type = "int" }) end
    it("accepts a sign and decimal digits", function()
      assert.are.equal(7, int("007"))
      assert.are.equal(5, int("+5"))
      assert.are.equal(-5, int("-5"))
      assert.are.equal(42, int("  42 \n"))
      assert.are.equal(42, int('" 42 "'))
      assert.are.equal(math.maxinteger, int("9223372036854775807"))
      assert.are.equal(math.mininteger, int("-9223372036854775808"))
      assert.are.equal(3, int("000000000000000000000000000003"))
    end)
    it("accepts exactly integral decimal and exponent forms", function()
      assert.are.equal(64, int("64.0"))
      assert.are.equal(1000, int("1e3"))
      assert.are.equal(15, int("1.50e1"))
      assert.are.equal(0, int("0.0e5"))
      assert.are.equal(0, int("-0.0"))
      assert.are.equal(120, int("12e+1"))
      assert.are.equal(9007199254740993, int("9007199254740993.0"))
      assert.are.equal("integer", math.type(int("1e3")))
    end)
    it("rejects everything else", function()
      for _, s in ipairs { "1.5", "0x10", "", "  ", "12abc", "true", "1e-3",
                           "9223372036854775808", "-9223372036854775809",
                           "1e19", "1e999999999999", "NaN", "inf", "1_000",
                           "1,000", "--1", "[1]", '"1.5"', "0.1" } do
        assert.is_nil(int(s), s)
      end
    end)
  end)

  describe("float (rule 34)", function()
    local function float(s) return hp.coerce(s, { type = "float" }) end
    it("accepts decimal and exponent notation", function()
      assert.are.equal(0.1, float("0.1"))
      assert.are.equal(0.5, float(".5"))
      assert.are.equal(5.0, float("5."))
      assert.are.equal(-2e-3, float("-2e-3"))
      assert.are.equal(64.0, float("64"))
      assert.are.equal("float", math.type(float("64")))
      assert.are.equal(1e300, float("1E+300"))
      assert.are.equal(0.25, float(' "0.25" '))
    end)
    it("rejects nan, inf, hex, empty and trailing garbage", function()
      for _, s in ipairs { "nan", "NaN", "inf", "-inf", "Infinity", "0x1p4",
                           "0x10", "", " ", "1.5x", "1,5", "1e", "e5", ".",
                           "1e999", "1.2.3", "true", "- 1" } do
        assert.is_nil(float(s), s)
      end
    end)
    it("with f32 = true, rejects what a 32-bit float cannot hold", function()
      local spec = { type = "float", f32 = true, min = 0 }
      assert.are.equal(3e38, hp.coerce("3e38", spec))
      assert.are.equal(0.0, hp.coerce("0", spec))
      assert.are.equal(1.2e-38, hp.coerce("1.2e-38", spec))
      for _, s in ipairs { "1e39", "3.5e38", "1e-50", "1e-39" } do
        local v, msg = hp.coerce(s, spec)
        assert.is_nil(v, s)
        assert.truthy(msg:find("32-bit float", 1, true), s)
      end
      local list = { type = "list", of = "float", f32 = true }
      assert.is_nil((hp.coerce("[1, 1e39]", list)))
      assert.are.same({ 1.0, 2.0 }, hp.coerce("[1, 2]", list))
    end)
    it("does not depend on the C locale", function()
      local old = os.setlocale(nil, "numeric")
      local comma
      for _, l in ipairs { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8",
                           "fr_FR.utf8", "de_DE", "fr_FR" } do
        if os.setlocale(l, "numeric") then comma = l break end
      end
      if not comma then
        pending("no locale with a decimal comma is installed")
        return
      end
      local ok, err = pcall(function()
        assert.are.equal(0.5, float("0.5"))
        assert.is_nil(float("0,5"))
        assert.are.equal("0.1", hp.float_repr(0.1))
      end)
      os.setlocale(old, "numeric")
      assert(ok, err)
    end)
  end)

  describe("bool (rule 35)", function()
    it("accepts true and false in any case only", function()
      local spec = { type = "bool" }
      assert.is_true(hp.coerce("TRUE", spec))
      assert.is_true(hp.coerce("tRuE", spec))
      assert.is_false(hp.coerce("False", spec))
      assert.is_false(hp.coerce('"false"', spec))
      for _, s in ipairs { "yes", "1", "0", "t", "", "on", "truee", "null" } do
        local v, why = hp.coerce(s, spec)
        assert.is_nil(v, s)
        assert.are.equal("true or false", why)
      end
    end)
  end)

  describe("string and enum (rules 36, 37)", function()
    it("string unquotes literals and otherwise keeps every byte", function()
      local spec = { type = "string" }
      assert.are.equal("x", hp.coerce('"x"', spec))
      assert.are.equal(" raw ", hp.coerce(" raw ", spec))
      assert.are.equal('"x"', hp.coerce('"\\"x\\""', spec))
      assert.are.equal("", hp.coerce("", spec))
      assert.are.equal("[1,2]", hp.coerce("[1,2]", spec))
    end)
    it("enum requires an exact, case-sensitive match", function()
      local spec = { type = "enum", values = { "warp", "bpr" } }
      assert.are.equal("bpr", hp.coerce("bpr", spec))
      assert.are.equal("bpr", hp.coerce('"bpr"', spec))
      local v, why = hp.coerce("BPR", spec)
      assert.is_nil(v)
      assert.matches('one of "warp", "bpr"', why, 1, true)
      assert.matches("case-sensitive", why, 1, true)
      v, why = hp.coerce(" bpr", spec)
      assert.is_nil(v)
      assert.matches("remove the spaces around the value", why, 1, true)
      v, why = hp.coerce(" BPR ", spec)
      assert.matches("case-sensitive", why, 1, true)
      v, why = hp.coerce("logistic", spec)
      assert.is_nil(v)
      assert.is_nil(why:find("(", 1, true))
    end)
  end)

  describe("list (rule 38)", function()
    it("accepts a JSON array, quoted or not, and coerces elements", function()
      local ints = { type = "list", of = "int" }
      assert.are.same({ 1, 2, 3 }, hp.coerce("[1, 2, 3]", ints))
      assert.are.same({ 1, 2 }, hp.coerce('"[1,2]"', ints))
      assert.are.same({ 1, 2 }, hp.coerce('["1", 2.0]', ints))
      assert.are.same({}, hp.coerce("[]", ints))
      assert.are.same({ "a", " b" },
        hp.coerce('["a", " b"]', { type = "list", of = "string" }))
      assert.are.same({ 0.5, 2.0 },
        hp.coerce("[0.5, 2]", { type = "list", of = "float" }))
      assert.are.same({ true, false },
        hp.coerce('[true, "False"]', { type = "list", of = "bool" }))
    end)
    it("accepts a comma-separated form", function()
      assert.are.same({ "a", "b", "c" },
        hp.coerce("a, b,c", { type = "list", of = "string" }))
      assert.are.same({ 10, 20 }, hp.coerce("10,20", { type = "list", of = "int" }))
      assert.are.same({ 10 }, hp.coerce("10", { type = "list", of = "int" }))
      assert.are.same({}, hp.coerce("", { type = "list", of = "int" }))
    end)
    it("names the bad element", function()
      local v, why = hp.coerce("[1, 2.5]", { type = "list", of = "int", min = 1 })
      assert.is_nil(v)
      assert.matches("a JSON array of integers >= 1", why, 1, true)
      assert.matches('element 2 is "2.5"', why, 1, true)
      assert.is_nil(hp.coerce("[1, null]", { type = "list", of = "int" }))
      assert.is_nil(hp.coerce("[1, 0]", { type = "list", of = "int", min = 1 }))
      assert.is_nil(hp.coerce("[1, [2]]", { type = "list", of = "int" }))
      assert.is_nil(hp.coerce("[1, 2", { type = "list", of = "int" }))
      assert.is_nil(hp.coerce('["warp", "x"]',
        { type = "list", of = "enum", values = { "warp", "bpr" } }))
      assert.are.same({ "warp" }, hp.coerce('["warp"]',
        { type = "list", of = "enum", values = { "warp", "bpr" } }))
    end)
  end)

  describe("bounds (rule 39)", function()
    it("checks inclusive and exclusive min and max", function()
      local s = { type = "int", min = 1, max = 4096 }
      assert.are.equal(1, hp.coerce("1", s))
      assert.are.equal(4096, hp.coerce("4096", s))
      assert.is_nil(hp.coerce("0", s))
      local v, why = hp.coerce("4097", s)
      assert.is_nil(v)
      assert.are.equal("an integer >= 1 and <= 4096 (e.g. 10)", why)
      local f = { type = "float", min = 0, min_exclusive = true, max = 1,
                  max_exclusive = true, default = 0.05 }
      assert.is_nil(hp.coerce("0", f))
      assert.is_nil(hp.coerce("1", f))
      assert.are.equal(0.5, hp.coerce("0.5", f))
      assert.are.equal("a number > 0 and < 1 (e.g. 0.05)", select(2, hp.coerce("0", f)))
    end)
  end)

  describe("T2 reserved split (rules 30, 41)", function()
    it("leaves exactly one user hyperparameter and no warnings", function()
      local raw = hp.read_file(tmpfile([[{
        "sagemaker_program": "\"warp.lua\"",
        "sagemaker_region": "\"eu-west-1\"",
        "_tuning_objective_metric": "validation:ndcg@10",
        "sagemaker_mpi_enabled": "false",
        "lr": "0.1"
      }]]))
      local user, reserved = hp.split_reserved(raw)
      assert.are.same({ lr = "0.1" }, user)
      assert.are.same({
        sagemaker_program = '"warp.lua"', sagemaker_region = '"eu-west-1"',
        _tuning_objective_metric = "validation:ndcg@10",
        sagemaker_mpi_enabled = "false" }, reserved)
      local typed, unknown = hp.apply({ lr = { type = "float", default = 0.05 } },
                                      user)
      assert.are.equal(0.1, typed.lr)
      assert.are.same({}, unknown)
      assert.is_nil(hp.unknown_warning(unknown))
      -- Reserved keys given to apply are never "unknown" either.
      local _, unknown2 = hp.apply({ lr = { type = "float" } }, raw)
      assert.are.same({}, unknown2)
      assert.is_true(hp.is_reserved("default_user_module_name"))
      assert.is_false(hp.is_reserved("sagemaker"))
    end)
  end)

  describe("schema", function()
    local decls = {
      factors = { type = "int", default = 64, min = 1, max = 4096,
                  help = "embedding size" },
      loss = { type = "enum", values = { "warp", "bpr" }, default = "warp" },
      lr = { type = "float", default = 0.05, min = 0, min_exclusive = true },
      tags = { type = "list", of = "string", default = {} },
      seed = { type = "int", default = 42 },
      verbose = { type = "bool", default = false },
      name = { type = "string" },
      required_key = { type = "string", required = true },
    }

    it("applies defaults and coerces given values", function()
      local typed, unknown = hp.apply(decls, { required_key = "x",
        factors = '"128"', lr = "1e-3", extra = "1", tags = '["a","b"]' })
      assert.are.equal(128, typed.factors)
      assert.are.equal("warp", typed.loss)
      assert.are.equal(0.001, typed.lr)
      assert.are.same({ "a", "b" }, typed.tags)
      assert.are.equal(42, typed.seed)
      assert.is_false(typed.verbose)
      assert.is_nil(typed.name)
      assert.are.equal("x", typed.required_key)
      assert.are.same({ "extra" }, unknown)
      assert.matches("'extra'", hp.unknown_warning(unknown))
      assert.is_true(hp.is_default(typed, "seed"))
      assert.is_false(hp.is_default(typed, "factors"))
    end)

    it("keeps every raw string (rule 29)", function()
      local raw = { required_key = '"x"', factors = "128", extra = " 7 " }
      local typed = hp.apply(decls, raw)
      assert.are.same(raw, hp.raw(typed))
    end)

    it("gives a read-only table that refuses undeclared names", function()
      local typed = hp.apply(decls, { required_key = "x" })
      assert.has_error(function() typed.factors = 3 end)
      local ok, e = pcall(function() return typed.factrs end)
      assert.is_false(ok)
      assert.matches("did you mean 'factors'", e, 1, true)
      local keys = {}
      for k in pairs(typed) do keys[#keys + 1] = k end
      assert.are.same({ "factors", "loss", "lr", "required_key", "seed",
                        "tags", "verbose" }, keys)
      local plain = hp.totable(typed)
      assert.is_nil(getmetatable(plain))
      assert.are.equal(64, plain.factors)
    end)

    it("copies list defaults so recipes cannot change them", function()
      local s = hp.schema(decls)
      local a = hp.apply(s, { required_key = "x" })
      table.insert(a.tags, "z")
      local b = hp.apply(s, { required_key = "x" })
      assert.are.same({}, b.tags)
    end)

    it("collects every error and raises once (rule 40)", function()
      local long = string.rep("y", 100)
      local e = catch(hp.apply, decls, {
        factors = "abc", loss = "WARP", lr = "0", tags = "[1,", seed = long })
      assert.is_true(errors.is(e))
      assert.are.equal("HyperparameterError", e.category)
      assert.are.equal(6, #e.items)
      local keys = {}
      for i, item in ipairs(e.items) do keys[i] = item.key end
      assert.are.same({ "factors", "loss", "lr", "required_key", "seed", "tags" }, keys)
      local msg = e.message
      assert.matches("6 invalid hyperparameters", msg, 1, true)
      assert.matches([[hyperparameter 'factors' = "abc": expected an integer >= 1 and <= 4096 (e.g. 64)]], msg, 1, true)
      assert.matches([[hyperparameter 'loss' = "WARP": expected one of "warp", "bpr"]], msg, 1, true)
      assert.matches([[hyperparameter 'lr' = "0": expected a number > 0 (e.g. 0.05)]], msg, 1, true)
      assert.matches([[hyperparameter 'required_key' is required but missing: expected a string]], msg, 1, true)
      assert.matches([[hyperparameter 'seed' = "]] .. string.rep("y", 57) .. [[...": expected an integer]], msg, 1, true)
      assert.not_matches(string.rep("y", 58), msg)
      assert.matches([[hyperparameter 'tags' = "[1,": expected a JSON array of strings]], msg, 1, true)
    end)

    it("uses the brief form for a single error", function()
      local e = catch(hp.apply, { epochs = { type = "int" } }, { epochs = "abc" })
      assert.are.equal([[hyperparameter 'epochs' = "abc": expected an integer (e.g. 10)]],
                       e.message)
      assert.are.equal("HyperparameterError: " .. e.message, tostring(e))
    end)

    it("escapes control characters in shown values", function()
      local e = catch(hp.apply, { n = { type = "int" } }, { n = 'a\n"b' })
      assert.matches([[= "a\n\"b"]], e.message, 1, true)
    end)

    it("strict mode makes undeclared keys errors", function()
      local e = catch(hp.apply, decls, { required_key = "x", factrs = "3" },
                      { strict = true })
      assert.are.equal("HyperparameterError", e.category)
      assert.matches("'factrs' = \"3\": not declared by the recipe (did you mean 'factors'?)",
                     e.message, 1, true)
      assert.has_error(function() hp.apply(decls, {}, { strcit = true }) end)
    end)

    it("rejects bad declarations", function()
      local bad = {
        { x = { type = "integer" } },
        { x = { type = "int", dflt = 1 } },
        { x = { type = "enum" } },
        { x = { type = "enum", values = { "a", "a" } } },
        { x = { type = "enum", values = { "a" }, default = "b" } },
        { x = { type = "int", default = 1.5 } },
        { x = { type = "int", default = 0, min = 1 } },
        { x = { type = "int", required = true, default = 1 } },
        { x = { type = "int", min = 2, max = 1 } },
        { x = { type = "string", min = 1 } },
        { x = { type = "list" } },
        { x = { type = "list", of = "list" } },
        { x = { type = "list", of = "int", default = { 1, "2" } } },
        { x = { type = "int", of = "int" } },
        { x = { type = "int", min_exclusive = true } },
        { sagemaker_x = { type = "int" } },
        { _tuning_objective_metric = { type = "string" } },
        { [1] = { type = "int" } },
        { x = "int" },
      }
      for i, d in ipairs(bad) do
        local ok, msg = pcall(hp.schema, d)
        assert.is_false(ok, "declaration " .. i)
        assert.matches("hyperparameter schema", msg, 1, true)
      end
      local ok, msg = pcall(function()
        return hp.schema { x = { type = "integer" } }
      end)
      assert.is_false(ok)
      assert.matches("hp_spec.lua", msg, 1, true) -- points at the caller
      local s = hp.schema { f = { type = "int", default = 64.0 } }
      assert.are.equal("integer", math.type(hp.apply(s, {}).f))
    end)

    it("handles 100 entries with 256-character keys and 2500-character values (rule 42)", function()
      local d, raw = {}, {}
      for i = 1, 100 do
        local k = string.format("%03d", i) .. string.rep("k", 253)
        d[k] = { type = "string" }
        raw[k] = string.rep(string.char(97 + i % 26), 2500)
      end
      local typed, unknown = hp.apply(d, raw)
      assert.are.same({}, unknown)
      for k, v in pairs(raw) do assert.are.equal(v, typed[k]) end
      assert.are.same({}, hp.check_limits(raw))
    end)

    it("warns about what SageMaker would refuse, but accepts it", function()
      local raw = { [string.rep("k", 257)] = "1", v = string.rep("x", 2501) }
      for i = 1, 99 do raw["n" .. i] = "1" end
      local w = hp.check_limits(raw)
      assert.are.equal(3, #w)
      assert.matches("101 hyperparameters given", w[1], 1, true)
      local typed = hp.apply({ v = { type = "string" } }, raw)
      assert.are.equal(2501, #typed.v)
    end)

    it("takes another library's name for a key through aliases", function()
      local d = { factors = { type = "int", default = 32, aliases = { "no_components",
                                                                       "num_factors" } },
                  seed = { type = "int", default = 1 } }
      local typed, unknown = hp.apply(d, { no_components = "8", other = "1" })
      assert.are.equal(8, typed.factors)
      assert.are.same({ "other" }, unknown)
      assert.are.same({ no_components = "8", other = "1" }, hp.raw(typed))
      assert.matches("factors = 8 (given as no_components)", hp.format_for_log(typed), 1, true)
      -- A bad value is named by the name it was given under (rule 40).
      local ok, e = pcall(hp.apply, d, { no_components = "x" })
      assert.is_false(ok)
      assert.matches("^hyperparameter 'no_components' = \"x\": expected an integer", e.message)
      -- Both names, or two aliases: ambiguous.
      for _, raw in ipairs { { factors = "8", no_components = "8" },
                             { num_factors = "8", no_components = "16" } } do
        ok, e = pcall(hp.apply, d, raw)
        assert.is_false(ok)
        assert.are.equal("HyperparameterError", e.category)
        assert.matches("is another name for 'factors', and '[%w_]+' is given too; keep one", e.message)
      end
      -- Strict mode does not call an alias undeclared.
      assert.are.equal(8, hp.apply(d, { num_factors = "8" }, { strict = true }).factors)
    end)

    it("refuses aliases that clash", function()
      local function bad(d, pattern)
        local ok, msg = pcall(hp.schema, d)
        assert.is_false(ok)
        assert.matches(pattern, msg)
      end
      bad({ a = { type = "int", aliases = { "b" } }, b = { type = "int" } },
          "alias 'b' is a declared key itself")
      bad({ a = { type = "int", aliases = { "c" } }, b = { type = "int", aliases = { "c" } } },
          "alias 'c' is also an alias of")
      bad({ a = { type = "int", aliases = "c" } }, "aliases must be a list")
      bad({ a = { type = "int", aliases = { "sagemaker_x" } } }, "reserved")
    end)
  end)

  describe("read_file (rules 16, 28)", function()
    it("keeps the text of non-string values", function()
      local path = tmpfile([[
{
  "a": 64, "b": 64.0, "c": 0.1, "d": 1e-3, "e": -0,
  "f": true, "g": null, "h": [1, 2.50, "x y", {"k": [ ]}],
  "i": {"z": 1, "a": "\"q\""},
  "j": "plain", "k": "\"quoted\"", "l": "esc \u00e9 \\ \/ \t",
  "m": 123456789012345678901234567890
}
]])
      local raw = hp.read_file(path)
      assert.are.same({
        a = "64", b = "64.0", c = "0.1", d = "1e-3", e = "-0", f = "true",
        g = "null", h = '[1,2.50,"x y",{"k":[]}]', i = '{"z":1,"a":"\\"q\\""}',
        j = "plain", k = '"quoted"', l = "esc é \\ / \t",
        m = "123456789012345678901234567890",
      }, raw)
      -- and the SM_HP_* texts follow (rule 53)
      assert.are.equal("64", smenv.hp_text(raw.a))
      assert.are.equal("64.0", smenv.hp_text(raw.b))
      assert.are.equal("0.001", smenv.hp_text(raw.d))
      assert.are.equal("0", smenv.hp_text(raw.e))
      assert.are.equal('[1,2.5,"x y",{"k":[]}]', smenv.hp_text(raw.h))
      assert.are.equal('{"a":"\\"q\\"","z":1}', smenv.hp_text(raw.i))
      assert.are.equal("123456789012345678901234567890", smenv.hp_text(raw.m))
      assert.are.equal(64, hp.apply({ b = { type = "int" } }, raw).b)
    end)

    it("reads an empty object, a BOM and duplicates (last wins)", function()
      assert.are.same({}, hp.read_file(tmpfile(" {} \n")))
      assert.are.same({ a = "1" }, hp.read_file(tmpfile('\239\187\191{"a":"1"}')))
      local raw, dups = hp.read_file(tmpfile('{"a":"1","a":"2"}'))
      assert.are.same({ a = "2" }, raw)
      assert.are.same({ "a" }, dups)
    end)

    it("returns nil, msg for a missing file (rule 13)", function()
      local raw, msg = hp.read_file("/nonexistent/moonfm/hyperparameters.json")
      assert.is_nil(raw)
      assert.matches("No such file", msg, 1, true)
    end)

    local cases = {
      { '{"a": "1",\n "b": 2,\n "c": tru}', "line 3, column 7" },
      { '{"a": "1"', "line 1, column 10" },
      { '{"a": 01}', "leading zero" },
      { '{"a": NaN}', "line 1, column 7" },
      { '{"a": "x\ty"}', "control character" },
      { '{"a": "1"} x', "after the object" },
      { '{"a" "1"}', "expected ':'" },
      { '{"a": [1,]}', "line 1, column 10" },
      { '["a"]', "expected a JSON object at the top level, found an array" },
      { '"a"', "found a string" },
      { "", "the file is empty" },
      { "  \n", "the file is empty" },
      { '{"é": 1, "b": x}', "line 1, column 15" },
    }
    for _, c in ipairs(cases) do
      it("fails with a ConfigError naming the file and position: " ..
         c[2], function()
        local path = tmpfile(c[1])
        local e = catch(hp.read_file, path)
        assert.is_true(errors.is(e))
        assert.are.equal("ConfigError", e.category)
        assert.matches(path, e.message, 1, true)
        assert.matches(c[2], e.message, 1, true)
      end)
    end
  end)

  describe("raw_from_json_value (rule 28)", function()
    it("turns cjson values into compact JSON text", function()
      local cjson = require "cjson"
      local v = cjson.decode('{"a": 64, "b": 0.1, "c": [1, true, null], "d": "s", "e": {"y": 1, "x": 2}}')
      assert.are.equal("64", hp.raw_from_json_value(v.a))
      assert.are.equal("0.1", hp.raw_from_json_value(v.b))
      assert.are.equal("[1,true,null]", hp.raw_from_json_value(v.c))
      assert.are.equal("s", hp.raw_from_json_value(v.d))
      assert.are.equal('{"x":2,"y":1}', hp.raw_from_json_value(v.e))
      assert.are.equal("null", hp.raw_from_json_value(cjson.null))
      assert.are.equal("false", hp.raw_from_json_value(false))
    end)
  end)

  describe("format_for_log (rule 43)", function()
    it("prints one sorted block of typed values", function()
      local typed = hp.apply({
        b = { type = "int", default = 3 }, a = { type = "string" },
        c = { type = "list", of = "float" }, d = { type = "float" },
        e = { type = "bool" } },
        { a = "x", c = "[0.1, 2]", d = "64", e = "True", zz = "1" })
      assert.are.equal(table.concat({
        '  a = "x"',
        "  b = 3 (default)",
        "  c = [0.1, 2.0]",
        "  d = 64.0",
        "  e = true",
      }, "\n"), hp.format_for_log(typed))
      assert.are.equal("  (none)", hp.format_for_log(hp.apply({}, {})))
      assert.are.equal("  a = 1\n  b = [1, 2]", hp.format_for_log { b = { 1, 2 }, a = 1 })
    end)
  end)

  describe("float_repr", function()
    it("writes floats like Python's repr", function()
      local cases = {
        [0.1] = "0.1", [64.0] = "64.0", [1e-3] = "0.001", [1e-5] = "1e-05",
        [1e16] = "1e+16", [1e15] = "1000000000000000.0", [0.0] = "0.0",
        [1.5e300] = "1.5e+300", [5e-324] = "5e-324", [-2.5] = "-2.5",
        [123456789012345680.0] = "1.2345678901234568e+17",
        [0.30000000000000004] = "0.30000000000000004",
        [2 ^ -1074 * 3] = "1.5e-323", [1 / 3] = "0.3333333333333333",
      }
      for x, want in pairs(cases) do
        assert.are.equal(want, hp.float_repr(x))
      end
      assert.are.equal("-0.0", hp.float_repr(-0.0))
      assert.are.equal("Infinity", hp.float_repr(math.huge))
      assert.are.equal("NaN", hp.float_repr(0 / 0))
    end)
  end)
end)
