-- Raises an ordinary Lua error after declaring its output: a RecipeError.
local moonfm = require "moonfm"
moonfm.declare_output("model.moonfm")
local function train(x) return x.missing.field end
train({})
