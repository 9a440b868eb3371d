-- Data channels: File, FastFile and Pipe mode (spec sections 4, 12, 16).
-- The parsing is in C (moonfm.core.read_interactions); this module lists
-- the files, picks the format, waits for pipes, logs what was read and
-- turns a bad row into a DataError.
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local log = require "moonfm.log"
local lfs = require "lfs"

local M = {}

-- Defaults.
M.wait_timeout = 600      -- seconds to wait for a pipe (rule 111)
M.poll_interval = 0.1     -- seconds between looks for a pipe (rule 111)
M.log_interval = 60       -- seconds between "still waiting" lines

local TMP_PREFIX = ".moonfm-tmp-"

-- Byte-wise string order (rule 85), whatever the C locale says.
local bytewise
do
  local collate = os.setlocale(nil, "collate")
  if collate == "C" or collate == "POSIX" then
    bytewise = function(a, b) return a < b end
  else
    bytewise = function(a, b)
      local n = math.min(#a, #b)
      for i = 1, n do
        local x, y = a:byte(i), b:byte(i)
        if x ~= y then return x < y end
      end
      return #a < #b
    end
  end
end

-- list_files(dir) -> sorted relative paths | fail, msg
-- Recursive, following symlinks (a directory reached twice through links
-- is read once), skipping hidden names and moonfm's temporary files.
function M.list_files(dir)
  local mode = lfs.attributes(dir, "mode")
  if mode == nil then
    return nil, dir .. " does not exist"
  elseif mode ~= "directory" then
    return nil, dir .. ": not a directory"
  end
  local out, seen, bad = {}, {}, nil
  local function walk(abs, rel)
    local real = core.realpath(abs)
    if not real or seen[real] then return end
    seen[real] = true
    for name in lfs.dir(abs) do
      if name:sub(1, 1) ~= "." and name:sub(1, #TMP_PREFIX) ~= TMP_PREFIX then
        local path = abs .. "/" .. name
        local r = rel and (rel .. "/" .. name) or name
        local mode, why = lfs.attributes(path, "mode") -- follows symlinks
        -- A link to nowhere is a file the job meant to read: skipping it
        -- would lose its rows without a word.
        if not mode then
          bad = bad or (tostring(why) .. " (a broken symbolic link?)")
        elseif mode == "directory" then
          walk(path, r)
        elseif mode == "file" or mode == "named pipe" then
          out[#out + 1] = r
        end
      end
    end
  end
  walk(dir, nil)
  if bad then return nil, bad end
  table.sort(out, bytewise)
  return out
end

-- Content types moonfm reads (rule 25: lower-cased media type).
local content_formats = {
  ["text/csv"] = { "csv", "," },
  ["text/x-csv"] = { "csv", "," },
  ["application/csv"] = { "csv", "," },
  ["text/tab-separated-values"] = { "csv", "\t" },
  ["text/tsv"] = { "csv", "\t" },
  ["application/jsonlines"] = { "jsonl" },
  ["application/x-jsonlines"] = { "jsonl" },
  ["application/json-lines"] = { "jsonl" },
  ["application/jsonl"] = { "jsonl" },
  ["text/libsvm"] = { "sparse" },
  ["text/x-libsvm"] = { "sparse" },
  ["application/x-libsvm"] = { "sparse" },
}

-- The media type and parameters of a channel ("text/csv;header=present"
-- is accepted too, in case the caller did not split it).
local function content_type(channel)
  local ct, params = channel.content_type, channel.content_params or {}
  if type(ct) == "string" and ct:find(";", 1, true) then
    local parts = {}
    for p in ct:gmatch("[^;]+") do parts[#parts + 1] = p end
    ct = parts[1]
    params = {}
    for k = 2, #parts do
      local key, v = parts[k]:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
      if key then params[key:lower()] = v end
    end
  end
  return ct and ct:lower():gsub("%s", ""), params
end

-- The format a file's name says ("csv", "jsonl", "sparse"), or nil.
local function name_format(name)
  local f = name:lower():gsub("%.gz$", "")
  if f:match("%.jsonl$") or f:match("%.json$") or f:match("%.ndjson$") then
    return "jsonl"
  elseif f:match("%.libsvm$") or f:match("%.svm$") or f:match("%.libfm$") then
    return "sparse"
  elseif f:match("%.csv$") or f:match("%.tsv$") then
    return "csv"
  end
end
local format_names = { csv = "CSV", jsonl = "JSON lines", sparse = "libsvm rows" }

-- format, delimiter, header for read_interactions.  opts win over the
-- content type, which wins over file names; CSV with detection last.
local function pick_format(channel, opts, files)
  local ct, params = content_type(channel)
  local format, delim, header = opts.format, opts.delimiter, opts.header
  local known = ct and content_formats[ct]
  if ct and not known and not format then
    errors.raise("DataError", string.format(
      "channel '%s': content type '%s' is not one moonfm reads (text/csv, "
      .. "text/tab-separated-values, application/jsonlines, text/libsvm); "
      .. "fix the channel's ContentType or pass format=", channel.name, ct))
  end
  if not format and known then
    format = known[1]
    delim = delim or known[2]
  end
  if not format and files and files[1] then
    -- One read takes one format, named by the first file: files whose
    -- names say another would fail on their first row with a parse error.
    local first, first_kind
    for _, name in ipairs(files) do
      local kind = name_format(name)
      if kind and not first then
        first, first_kind = name, kind
      elseif kind and kind ~= first_kind then
        errors.raise("DataError", string.format(
          "channel '%s' mixes file formats: %s (%s) and %s (%s); a channel "
          .. "is read in one format: put them in separate channels, or "
          .. "convert one", channel.name, first, format_names[first_kind],
          name, format_names[kind]))
      end
    end
    local kind = name_format(files[1])
    if kind == "jsonl" or kind == "sparse" then
      format = kind
    elseif files[1]:lower():gsub("%.gz$", ""):match("%.tsv$") then
      delim = delim or "\t"
    end
  end
  if header == nil and params.header ~= nil then
    local h = tostring(params.header):lower()
    if h == "present" or h == "true" or h == "1" then header = true
    elseif h == "absent" or h == "false" or h == "0" then header = false end
  end
  return format or "csv", delim, header
end

local read_keys = {
  bad_rows = true, columns = true, default_weight = true, delimiter = true,
  format = true, grow_items = true, grow_users = true, header = true,
  items = true, max_bad_fraction = true, max_bad_rows = true, users = true,
  wait_timeout = true, block_size = true,
}

local function check_opts(opts, keys, what)
  opts = opts or {}
  if type(opts) ~= "table" then error(what .. ": opts must be a table", 3) end
  for k in pairs(opts) do
    if not keys[k] then
      error(string.format("%s: unknown option '%s'", what, tostring(k)), 3)
    end
  end
  return opts
end

local function check_channel(channel, what)
  if type(channel) ~= "table" or type(channel.name) ~= "string"
      or type(channel.path) ~= "string" then
    error(what .. ": channel must be a table with name and path", 3)
  end
  local mode = channel.mode or "File"
  if mode ~= "File" and mode ~= "FastFile" and mode ~= "Pipe" then
    error(what .. ": channel mode must be File, FastFile or Pipe, got "
          .. tostring(mode), 3)
  end
  return mode
end

local function mb(n) return n / 1e6 end

-- Logs what a read saw; warnings for skipped rows and unseen ids.
local function summarize(name, x, rep, secs, what)
  local nu, ni = x:shape()
  -- Which CSV columns were taken, so a wrong guess (a rank or a
  -- timestamp as the weight) shows in the log.
  local layout = ""
  local c = rep.columns
  if what == "rows" and rep.delimiter and c and c.user then
    local d = ({ ["\t"] = "tab", [" "] = "space" })[rep.delimiter]
              or "'" .. rep.delimiter .. "'"
    layout = string.format(" (delimiter %s, %s; columns: user %d, item %d, "
      .. "weight %s)", d, rep.header and "header" or "no header", c.user,
      c.item, c.weight and tostring(c.weight) or "none")
  end
  log.info("channel '%s': read %d %s from %d file%s (%.1f MB) in %.2f s: "
           .. "%d users, %d items, %d interactions%s",
           name, rep.rows, what, rep.files, rep.files == 1 and "" or "s",
           mb(rep.bytes), secs, nu, ni, x:nnz(), layout)
  if rep.bad > 0 then
    log.warn("channel '%s': skipped %d malformed row%s (bad_rows=skip); "
             .. "the first: %s", name, rep.bad, rep.bad == 1 and "" or "s",
             rep.bad_examples[1] or "?")
  end
  if rep.dropped > 0 then
    log.warn("channel '%s': dropped %d row%s with ids never seen in "
             .. "training: %d unknown users (%d rows), %d unknown items "
             .. "(%d rows)", name, rep.dropped, rep.dropped == 1 and "" or "s",
             rep.unseen_users, rep.unseen_user_rows, rep.unseen_items,
             rep.unseen_item_rows)
  end
end

-- Names of files that come with a dataset but hold no rows (an unpacked
-- download, e.g. MovieLens' README): read as data, they fail on their
-- prose, so say first why they are read at all.
local function looks_like_docs(name)
  local base = name:match("[^/]*$"):lower()
  return base:match("^readme") or base:match("^license") or base:match("^licence")
    or base:match("%.md$") or base:match("%.pdf$") or base:match("%.html?$")
end

-- Reads paths into an Interactions; raises DataError on a bad row or an
-- unreadable file; returns nil, "stopped" when the stop flag ended it.
local function read_paths(channel, paths, names, ropts, what)
  local t0 = core.clock()
  ropts.channel = channel.name
  for _, n in ipairs(names) do
    if looks_like_docs(n) then
      log.warn("channel '%s': %s looks like documentation, but every file "
               .. "in a channel's folder is read as data; move it out of "
               .. "the channel", channel.name, n)
    end
  end
  -- A named pipe in a File-mode folder is read like a file: the read
  -- waits until something writes to it, so say so before waiting.
  if channel.mode ~= "Pipe" then
    for k, p in ipairs(paths) do
      if lfs.attributes(p, "mode") == "named pipe" then
        log.warn("channel '%s': %s is a named pipe; reading waits until a "
                 .. "writer opens it (for SageMaker's Pipe mode, set the "
                 .. "channel's TrainingInputMode to Pipe)", channel.name,
                 names[k])
      end
    end
  end
  ropts.file_names = names
  if channel.record_wrapper and channel.record_wrapper ~= "None" then
    ropts.record_wrapper = channel.record_wrapper
  end
  local x, rep, kind = core.read_interactions(paths, ropts)
  if not x then
    if kind == "stopped" then return nil, "stopped" end
    for _, n in ipairs(names) do
      if looks_like_docs(n) and rep:find("file " .. n .. ",", 1, true) then
        rep = rep .. " (" .. n .. " looks like documentation: move it out "
              .. "of the channel's folder, whose every file is read as data)"
        break
      end
    end
    -- A feature file in another shape (MovieLens' movies.csv: id, title,
    -- genres) fails on its weight column: say what shape is read.
    if what == "feature rows" and rep:find("(weight): ", 1, true) then
      rep = rep .. " (feature rows are id,feature[,weight], one feature "
            .. "per row; a field holding several, such as the genres "
            .. "'Action|Comedy', must be split into rows id,Action and "
            .. "id,Comedy)"
    end
    errors.raise("DataError", rep)
  end
  summarize(channel.name, x, rep, core.clock() - t0, what)
  return x, rep
end

local function interaction_opts(channel, opts, files)
  local format, delim, header = pick_format(channel, opts, files)
  return {
    format = format, delimiter = delim, header = header,
    columns = opts.columns, bad_rows = opts.bad_rows,
    max_bad_rows = opts.max_bad_rows,
    max_bad_fraction = opts.max_bad_fraction,
    default_weight = opts.default_weight,
    users = opts.users, items = opts.items,
    grow_users = opts.grow_users, grow_items = opts.grow_items,
    block_size = opts.block_size,
  }
end

-- An empty Interactions (rule 88: the recipe decides if that is an error).
local function empty(channel, ropts)
  local msg = string.format("channel '%s': no data files in %s",
                            channel.name, channel.path)
  if channel.distribution == "ShardedByS3Key" then
    msg = msg .. " (the channel is ShardedByS3Key: with more hosts than "
          .. "files, some hosts get no data; use FullyReplicated or more "
          .. "files)"
  end
  log.warn("%s", msg)
  ropts.channel = channel.name
  local x, rep = core.read_interactions({}, ropts)
  return x, rep
end

-- read(channel, opts) -> Interactions, report
-- channel = {name=, path=, mode=, content_type=, content_params=,
--            distribution=, record_wrapper=}.  Pipe mode reads epoch 0
-- (use open_epochs for more).  Returns nil, "stopped" when stopped.
--
-- ShardedByS3Key in a multi-host job: every host reads its own files,
-- then the hosts combine their reads (moonfm.dist.merge_read: one id
-- numbering, every host holding the whole channel), so a recipe sees what
-- one host reading every file would.  Every host must then call read for
-- that channel (it is collective).
local function sharded(channel)
  if channel.distribution ~= "ShardedByS3Key" then return nil end
  local dist = require "moonfm.dist"
  return dist.active() and dist or nil
end

local function combine(channel, opts, x, rep)
  local dist = sharded(channel)
  if not dist then return x, rep end
  return dist.merge_read(x, rep, channel.name,
    opts.users ~= nil and opts.grow_users == false,
    opts.items ~= nil and opts.grow_items == false)
end

function M.read(channel, opts)
  local mode = check_channel(channel, "data.read")
  opts = check_opts(opts, read_keys, "data.read")
  if mode == "Pipe" then
    local ep = M.open_epochs(channel, opts)
    local x, rep = ep:next_epoch()
    ep:close()
    if not x then return nil, "stopped" end
    return x, rep
  end
  local files, err = M.list_files(channel.path)
  if not files then
    errors.raise("DataError", string.format(
      "channel '%s': cannot read its folder: %s", channel.name, err))
  end
  local ropts = interaction_opts(channel, opts, files)
  if #files == 0 then return combine(channel, opts, empty(channel, ropts)) end
  local paths = {}
  for k, f in ipairs(files) do paths[k] = channel.path .. "/" .. f end
  local x, rep = read_paths(channel, paths, files, ropts, "rows")
  return combine(channel, opts, x, rep)
end

local feature_keys = {
  ids = true, features = true, grow_ids = true, grow_features = true,
  format = true, delimiter = true, header = true, columns = true,
  bad_rows = true, max_bad_rows = true, max_bad_fraction = true,
  default_weight = true, block_size = true,
}

-- read_features(channel, opts) -> Interactions (ids x features), report
-- opts.ids: the IdMap of the entities (users or items of the training
-- data), grown with new ids unless grow_ids = false; opts.features: a
-- feature-name IdMap to share (fresh by default).  Rows are
-- "id feature[:weight] ..." (libsvm style, the default) or CSV
-- "id,feature[,weight]" (format = "csv" or a CSV content type).
-- columns = {id=, feature=, weight=} for CSV.
function M.read_features(channel, opts)
  local mode = check_channel(channel, "data.read_features")
  opts = check_opts(opts, feature_keys, "data.read_features")
  if sharded(channel) then
    -- Feature rows grow the shared id maps in place; shards would grow
    -- them differently on each host.
    errors.config(string.format("channel '%s' is ShardedByS3Key: feature "
      .. "channels of a multi-host job must be FullyReplicated",
      channel.name), "Set S3DistributionType to FullyReplicated for this "
      .. "channel (every host needs every feature row).")
  end
  if mode == "Pipe" then
    error("data.read_features: feature channels must use File or "
          .. "FastFile mode", 2)
  end
  local files, err = M.list_files(channel.path)
  if not files then
    errors.raise("DataError", string.format(
      "channel '%s': cannot read its folder: %s", channel.name, err))
  end
  local ct = content_type(channel)
  local fopts = { format = opts.format, delimiter = opts.delimiter,
                  header = opts.header }
  if not fopts.format and not (ct and content_formats[ct]) then
    fopts.format = "sparse"
    local f = files[1] and files[1]:lower():gsub("%.gz$", "") or ""
    if f:match("%.csv$") or f:match("%.tsv$") then fopts.format = "csv" end
  end
  local ropts = interaction_opts(channel, fopts, files)
  -- Rows are id, feature[, weight] by position unless told otherwise (a
  -- header such as "item,feature" must not be read as item names).
  local cols = opts.columns or {}
  if cols.id or cols.feature or ropts.format == "csv" then
    ropts.columns = { user = cols.id or 1, item = cols.feature or 2,
                      weight = cols.weight }
  end
  ropts.users, ropts.items = opts.ids, opts.features
  ropts.grow_users = opts.grow_ids ~= false
  ropts.grow_items = opts.grow_features ~= false
  ropts.bad_rows, ropts.max_bad_rows = opts.bad_rows, opts.max_bad_rows
  ropts.max_bad_fraction = opts.max_bad_fraction
  ropts.default_weight = opts.default_weight
  ropts.block_size = opts.block_size
  if #files == 0 then return empty(channel, ropts) end
  local paths = {}
  for k, f in ipairs(files) do paths[k] = channel.path .. "/" .. f end
  return read_paths(channel, paths, files, ropts, "feature rows")
end

-- Pipe mode (rules 109-117).
local Epochs = {}
Epochs.__index = Epochs

-- open_epochs(channel, opts) -> object with :next_epoch(), :epoch(),
-- :close().  opts are those of read, plus wait_timeout (seconds).
function M.open_epochs(channel, opts)
  check_channel(channel, "data.open_epochs")
  opts = check_opts(opts, read_keys, "data.open_epochs")
  local timeout = opts.wait_timeout or M.wait_timeout
  if type(timeout) ~= "number" or timeout < 0 then
    error("data.open_epochs: wait_timeout must be a number >= 0", 2)
  end
  return setmetatable({ channel = channel, opts = opts, k = 0,
                        timeout = timeout }, Epochs)
end

-- The index of the next epoch to read (0 first).
function Epochs:epoch() return self.k end

-- Waits for path; true when it exists, false when stopped.
local function wait_for(path, name, timeout)
  local t0 = core.clock()
  local next_log = t0 + M.log_interval
  while not lfs.attributes(path, "mode") do
    if core.stop_requested() then return false end
    local now = core.clock()
    if now - t0 >= timeout then
      errors.raise("DataError", string.format(
        "channel '%s': the pipe %s did not appear within %g s (is the "
        .. "channel's TrainingInputMode Pipe, and did the previous epoch's "
        .. "reader finish?)", name, path, timeout))
    end
    if now >= next_log then
      log.info("channel '%s': waiting for %s (%.0f s so far)", name, path,
               now - t0)
      next_log = now + M.log_interval
    end
    if not core.sleep(math.min(M.poll_interval, timeout - (now - t0)))
    then
      return false
    end
  end
  return true
end

-- next_epoch() -> Interactions, report for epoch k (then k + 1), or nil,
-- "stopped" when the stop flag was raised.
function Epochs:next_epoch()
  if self.closed then error("next_epoch: the epochs were closed", 2) end
  local ch = self.channel
  -- Rule 109: built from the known name, never parsed.
  local path = ch.path .. "_" .. self.k
  if not wait_for(path, ch.name, self.timeout) then
    combine(ch, self.opts, nil) -- the other hosts learn of the stop
    return nil, "stopped"
  end
  local ropts = interaction_opts(ch, self.opts, { ch.name })
  local name = string.format("%s_%d", ch.name, self.k)
  local x, rep = read_paths(ch, { path }, { name }, ropts, "rows")
  x, rep = combine(ch, self.opts, x, rep)
  if not x then return nil, "stopped" end
  self.k = self.k + 1
  return x, rep
end

function Epochs:close() self.closed = true end

return M
