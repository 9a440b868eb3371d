-- moonfm.errors: categorised errors and their exit statuses (rules 56, 62).
local errors = require "moonfm.errors"

describe("moonfm.errors", function()
  it("maps every category to its exit status", function()
    assert.same({
      UsageError = 2, ConfigError = 2, HyperparameterError = 2,
      DataError = 3, RecipeError = 1, OutOfMemory = 1, InternalError = 70,
    }, errors.exit_codes)
  end)

  it("new builds an error with category, message and details", function()
    local e = errors.new("DataError", "channel 'train' is empty", "Add files.")
    assert.equals("DataError", e.category)
    assert.equals("channel 'train' is empty", e.message)
    assert.equals("Add files.", e.details)
    assert.is_nil(errors.new("ConfigError", "x").details)
  end)

  it("new refuses an unknown category", function()
    local ok, msg = pcall(errors.new, "BogusError", "x")
    assert.is_false(ok)
    assert.matches("unknown error category 'BogusError'", msg, 1, true)
    assert.has_error(function() errors.new(nil, "x") end)
  end)

  it("raise throws the error object itself", function()
    local ok, e = pcall(errors.raise, "HyperparameterError", "bad epochs", "d")
    assert.is_false(ok)
    assert.is_true(errors.is(e))
    assert.equals("HyperparameterError", e.category)
    assert.equals("bad epochs", e.message)
    assert.equals("d", e.details)
    assert.has_error(function() errors.raise("Nope", "x") end)
  end)

  it("is tells moonfm errors from other values", function()
    assert.is_true(errors.is(errors.new("RecipeError", "x")))
    assert.is_false(errors.is("RecipeError: x"))
    assert.is_false(errors.is({ category = "RecipeError", message = "x" }))
    assert.is_false(errors.is(nil))
    assert.is_false(errors.is(setmetatable({}, {})))
  end)

  it("shortcuts raise their category", function()
    for short, category in pairs {
      config = "ConfigError", hyperparameter = "HyperparameterError",
      data = "DataError", recipe = "RecipeError", usage = "UsageError",
      internal = "InternalError",
    } do
      local ok, e = pcall(errors[short], "what went wrong", "how to fix")
      assert.is_false(ok)
      assert.is_true(errors.is(e))
      assert.equals(category, e.category)
      assert.equals("what went wrong", e.message)
      assert.equals("how to fix", e.details)
    end
  end)

  it("__tostring gives <Category>: <message>", function()
    assert.equals("DataError: bad row",
                  tostring(errors.new("DataError", "bad row", "details")))
    local _, e = pcall(errors.config, "file x")
    assert.equals("ConfigError: file x", tostring(e))
  end)
end)
