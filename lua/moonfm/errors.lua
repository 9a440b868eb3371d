-- Categorised errors (spec rules 56 and 62).  Code that knows what went
-- wrong raises one of these; moonfm.cli turns it into the failure file and
-- the exit status of its category.  Anything else a recipe raises is a
-- RecipeError.
local M = {}

-- Category -> exit status (rule 56).
M.exit_codes = {
  UsageError = 2,
  ConfigError = 2,
  HyperparameterError = 2,
  DataError = 3,
  RecipeError = 1,
  OutOfMemory = 1,
  InternalError = 70,
}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.category .. ": " .. e.message end
Error.__name = "moonfm.Error"

-- new(category, message [, details]): message is the one-sentence summary
-- (what and where); details, optional, is text that follows it.
function M.new(category, message, details)
  if not M.exit_codes[category] then
    error("unknown error category '" .. tostring(category) .. "'", 2)
  end
  return setmetatable({ category = category, message = message,
                        details = details }, Error)
end

-- raise(category, message [, details]) never returns.
function M.raise(category, message, details)
  error(M.new(category, message, details), 0)
end

function M.is(e) return getmetatable(e) == Error end

-- Shortcuts: errors.data("channel 'train' ..."), ...
for _, c in ipairs { "ConfigError", "HyperparameterError", "DataError",
                     "RecipeError", "UsageError", "InternalError" } do
  local short = c:gsub("Error$", ""):lower()
  M[short] = function(message, details) M.raise(c, message, details) end
end

return M
