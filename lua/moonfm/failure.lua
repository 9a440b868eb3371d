-- The failure file (spec section 9): B/output/failure holds one line
-- "<Category>: <summary>" and the details, at most 1024 bytes, cut at a
-- UTF-8 boundary; the full text goes to stderr and output/data.
local lfs = require "lfs"
local core = require "moonfm.core"

local M = {}

M.LIMIT = 1024

-- Cuts s to at most limit bytes, on a UTF-8 character boundary, ending a
-- cut text with "..." (rule 63).
function M.truncate(s, limit)
  limit = limit or M.LIMIT
  if #s <= limit then return s end
  local cut = limit - 3
  -- Step back over continuation bytes (10xxxxxx) to a character start.
  while cut > 0 do
    local b = s:byte(cut + 1)
    if b == nil or b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  return s:sub(1, cut) .. "..."
end

-- Makes text valid UTF-8 by replacing invalid bytes with "?", so that the
-- failure file is valid UTF-8 whatever a message quoted (rule 60).
function M.sanitize(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    -- The length the lead byte announces; utf8.len then rejects bad
    -- continuations, overlong forms and surrogates.  Only the bytes of a
    -- broken sequence become "?", never a valid character next to it.
    local b = s:byte(i)
    local n = b < 0x80 and 1 or b >= 0xC2 and b <= 0xDF and 2 or
      b >= 0xE0 and b <= 0xEF and 3 or b >= 0xF0 and b <= 0xF4 and 4 or nil
    local ch = n and s:sub(i, i + n - 1)
    if ch and #ch == n and utf8.len(ch) then
      out[#out + 1] = ch
      i = i + n
    else
      out[#out + 1] = "?"
      i = i + 1
    end
  end
  return table.concat(out)
end

-- The full text: first line "<Category>: <summary>", then details.
function M.text(category, summary, details)
  local first = (category .. ": " .. summary):gsub("[\r\n]+", " ")
  local t = first
  if details and details ~= "" then t = t .. "\n" .. details end
  return M.sanitize(t)
end

-- Writes the failure (rules 60-65) under output_dir, unless a failure file
-- already exists (rule 61: the recipe may have written a better one).
-- Prints the full text to stderr first.  Returns the full text.
-- The full text's name in output/data; a host that is not the leader of
-- a multi-host job names it after itself (rule 99: every host's tree goes
-- into one archive).
M.full_name = "failure-full.txt"

function M.report(output_dir, category, summary, details)
  local text = M.text(category, summary, details)
  io.stdout:flush()
  io.stderr:write(text, "\n")
  io.stderr:flush()
  if output_dir and lfs.attributes(output_dir, "mode") == "directory" then
    local path = output_dir .. "/failure"
    if lfs.attributes(path, "mode") == nil then
      core.write_atomic(path, M.truncate(text, M.LIMIT - 1) .. "\n")
    end
    if lfs.attributes(output_dir .. "/data", "mode") == "directory" then
      core.write_atomic(output_dir .. "/data/" .. M.full_name, text .. "\n")
    end
    os.remove(output_dir .. "/success") -- rule 58
  end
  return text
end

return M
