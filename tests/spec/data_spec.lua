-- moonfm.data and the IdMap / Interactions binding.
local core = require "moonfm.core"
local data = require "moonfm.data"
local errors = require "moonfm.errors"
local lfs = require "lfs"

local tmp_base = os.getenv("MOONFM_TEST_TMP") or "/tmp"
local tmp

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, cmd)
end

local function write(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then sh("mkdir -p '" .. dir .. "'") end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- pcall(fn, ...) with log[level] recording its lines: ok, result, lines.
local function logged(level, fn, ...)
  local log = require "moonfm.log"
  local orig, said = log[level], {}
  log[level] = function(fmt, ...) said[#said + 1] = fmt:format(...) end
  local ok, x = pcall(fn, ...)
  log[level] = orig
  return ok, x, said
end

local function channel(name, extra)
  local c = { name = name, path = tmp .. "/data/" .. name, mode = "File",
              distribution = "FullyReplicated", record_wrapper = "None" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- The DataError raised by f, or fails.
local function data_error(f)
  local ok, e = pcall(f)
  assert.is_false(ok)
  assert.is_true(errors.is(e), tostring(e))
  assert.equals("DataError", e.category)
  return e.message
end

local function weight(x, u, i)
  local ui, ii = x:users():find(u), x:items():find(i)
  if not ui or not ii then return nil end
  local items, ws = x:row(ui)
  for k, it in ipairs(items) do
    if it == ii then return ws[k] end
  end
  return nil
end

describe("moonfm.data", function()
  before_each(function()
    tmp = string.format("%s/data_spec-%d-%d", tmp_base, core.getpid(),
                        math.random(1e9))
    sh("mkdir -p '" .. tmp .. "'")
  end)
  after_each(function()
    core.stop_reset()
    sh("rm -rf '" .. tmp .. "'")
  end)

  it("runs under Lua 5.4", function()
    assert.equals("Lua 5.4", _VERSION)
  end)

  describe("list_files", function()
    it("recurses in byte order, follows symlinks, skips hidden files",
       function()
      local d = tmp .. "/ch"
      write(d .. "/b.csv", "")
      write(d .. "/B.csv", "")
      write(d .. "/a/z.csv", "")
      write(d .. "/a/b.csv", "")
      write(d .. "/a-b.csv", "")
      write(d .. "/.hidden", "")
      write(d .. "/.moonfm-tmp-123", "")
      write(d .. "/.git/x", "")
      write(tmp .. "/outside/o.csv", "")
      write(tmp .. "/target.csv", "")
      sh("ln -s '" .. tmp .. "/outside' '" .. d .. "/linked'")
      sh("ln -s '" .. tmp .. "/target.csv' '" .. d .. "/l.csv'")
      sh("ln -s '" .. d .. "' '" .. d .. "/a/loop'") -- a cycle
      local files = assert(data.list_files(d))
      assert.same({ "B.csv", "a-b.csv", "a/b.csv", "a/z.csv", "b.csv",
                    "l.csv", "linked/o.csv" }, files)
    end)

    it("fails on a missing folder", function()
      local files, msg = data.list_files(tmp .. "/nope")
      assert.is_nil(files)
      assert.matches("/nope does not exist", msg, 1, true)
      local f = tmp .. "/a-file"
      io.open(f, "w"):close()
      files, msg = data.list_files(f)
      assert.is_nil(files)
      assert.matches("a-file: not a directory", msg, 1, true)
    end)
  end)

  describe("read", function()
    it("reads CSV part files with headers", function()
      local c = channel("train", { content_type = "text/csv" })
      write(c.path .. "/part-1.csv", "user,item,rating\nu1,i1,5\nu2,i1,3\n")
      write(c.path .. "/part-2.csv", "user,item,rating\r\nu1,i2,1.5\r\n")
      local x, rep = data.read(c)
      assert.equals(3, rep.rows)
      assert.equals(2, rep.headers)
      assert.equals(2, rep.files)
      local nu, ni = x:shape()
      assert.equals(2, nu)
      assert.equals(2, ni)
      assert.equals(3, x:nnz())
      assert.equals(5, weight(x, "u1", "i1"))
      assert.equals(1.5, weight(x, "u1", "i2"))
      assert.equals("u2", x:users():get(2))
    end)

    it("counts weights of 0 or less after summing duplicates", function()
      local c = channel("train")
      write(c.path .. "/r.csv", "u,i,w\nu1,i1,0\nu1,i2,-2\nu2,i1,3\n"
            .. "u2,i2,-1\nu2,i2,2\n")
      local x, rep = data.read(c)
      assert.equals(4, x:nnz())
      assert.equals(2, rep.nonpositive) -- u1,i1 (0) and u1,i2 (-2)
      assert.equals(1, rep.negative)
    end)

    it("reads TSV without a header, gzip by magic, columns by position",
       function()
      local c = channel("train")
      write(tmp .. "/raw", "i1\tx\tu1\t4\ni2\tx\tu1\t2\n")
      sh("mkdir -p '" .. c.path .. "' && gzip -c '" .. tmp .. "/raw' > '"
         .. c.path .. "/data.bin'")
      local x, rep = data.read(c, { columns = { user = 3, item = 1,
                                                weight = 4 } })
      assert.equals("\t", rep.delimiter)
      assert.is_false(rep.header)
      assert.equals(4, weight(x, "u1", "i1"))
      assert.equals(2, weight(x, "u1", "i2"))
      assert.is_true(rep.raw_bytes < rep.bytes + 64)
    end)

    it("reads MovieLens' ratings.dat (\"::\"), detected or asked for",
       function()
      local c = channel("train")
      write(c.path .. "/ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
      local x, rep = data.read(c)
      assert.equals("::", rep.delimiter)
      assert.equals(5, weight(x, "1", "1193"))
      assert.equals(3, weight(x, "1", "661"))
      x, rep = data.read(c, { delimiter = "::" })
      assert.equals("::", rep.delimiter)
      assert.equals(2, x:nnz())
      assert.has_error(function() data.read(c, { delimiter = ":" }) end)
    end)

    it("reads columns by name and content_params", function()
      local c = channel("train", { content_type = "text/csv",
                                   content_params = { header = "present" } })
      write(c.path .. "/f", "ts,who,what,score\n1,a,b,2\n")
      local x = data.read(c, { columns = { user = "who", item = "what",
                                           weight = "score" } })
      assert.equals(2, weight(x, "a", "b"))
    end)

    it("reads JSON lines, ids as strings or numbers", function()
      local c = channel("train", { content_type = "application/jsonlines" })
      write(c.path .. "/f.jsonl",
            '{"user":"u1","item":17,"weight":2}\n'
            .. '{"user":18446744073709551617,"item":"i2"}\n')
      local x, rep = data.read(c)
      assert.equals(2, rep.rows)
      assert.equals(2, weight(x, "u1", "17"))
      assert.equals(1, weight(x, "18446744073709551617", "i2"))
    end)

    it("shares maps and counts unseen ids", function()
      local tr = channel("train")
      write(tr.path .. "/f.csv", "a,x\nb,y\n")
      local x = data.read(tr)
      local te = channel("test")
      write(te.path .. "/f.csv", "a,y\nc,x\nc,z\nb,z\n")
      local t, rep = data.read(te, { users = x:users(), items = x:items(),
                                     grow_users = false, grow_items = false })
      assert.equals(4, rep.rows)
      assert.equals(3, rep.dropped)
      assert.equals(1, rep.unseen_users)
      assert.equals(2, rep.unseen_user_rows)
      assert.equals(1, rep.unseen_items)
      assert.equals(2, rep.unseen_item_rows)
      assert.equals(1, t:nnz())
      assert.equals(2, #x:users())
      assert.equals(x:users(), t:users())
      -- Growing maps then lining up the training set.
      local g = channel("more")
      write(g.path .. "/f.csv", "d,w\n")
      data.read(g, { users = x:users(), items = x:items() })
      assert.equals(3, #x:users())
      local nu = x:shape()
      assert.equals(2, nu)
      local r = x:resized()
      assert.same({ 3, 3 }, { r:shape() })
      assert.equals(x:nnz(), r:nnz())
    end)

    it("raises DataError naming channel, file, line and column", function()
      local c = channel("train")
      write(c.path .. "/part-1.csv", "u1,i1,1\n")
      write(c.path .. "/part-2.csv", "u2,i2,1\nu3,i3,1\nu17,,3.0\n")
      local msg = data_error(function() data.read(c) end)
      assert.equals("channel 'train': file part-2.csv, line 3, column 2 "
                    .. "(item): empty id in row \"u17,,3.0\"; fix the row "
                    .. "or pass bad_rows=skip", msg)
    end)

    it("skips bad rows when told, within the cap", function()
      local c = channel("train")
      write(c.path .. "/f.csv", "a,b,1\na,,1\nc,d,x\ne,f,2\n")
      local x, rep = data.read(c, { bad_rows = "skip" })
      assert.equals(2, rep.bad)
      assert.equals(2, x:nnz())
      assert.matches("line 2", rep.bad_examples[1], 1, true)
      local msg = data_error(function()
        data.read(c, { bad_rows = "skip", max_bad_rows = 1 })
      end)
      assert.matches("max_bad_rows=1", msg, 1, true)
      msg = data_error(function()
        data.read(c, { bad_rows = "skip", max_bad_fraction = 0.1 })
      end)
      assert.matches("2 of 4", msg, 1, true)
    end)

    it("gives an empty data set for an empty channel", function()
      local c = channel("train", { distribution = "ShardedByS3Key" })
      sh("mkdir -p '" .. c.path .. "'")
      local x, rep = data.read(c)
      assert.equals(0, x:nnz())
      assert.equals(0, rep.rows)
    end)

    it("raises DataError for a missing folder or unknown content type",
       function()
      local msg = data_error(function() data.read(channel("nope")) end)
      assert.matches("channel 'nope'", msg, 1, true)
      local c = channel("train", { content_type = "image/png" })
      write(c.path .. "/f", "a,b\n")
      msg = data_error(function() data.read(c) end)
      assert.matches("image/png", msg, 1, true)
    end)

    it("refuses unknown options and bad channels", function()
      assert.has_error(function() data.read(channel("x"), { colums = {} }) end)
      assert.has_error(function() data.read({ name = "x" }) end)
      assert.has_error(function()
        data.read(channel("x", { mode = "Stream" }))
      end)
    end)
  end)

  describe("read_features", function()
    it("reads libsvm-style rows into a shared id map", function()
      local tr = channel("train")
      write(tr.path .. "/f.csv", "u1,i1\nu2,i2\n")
      local x = data.read(tr)
      local f = channel("item_features")
      write(f.path .. "/f.txt", "i2 genre:comedy:1 year:0.5\ni9 genre:drama\n")
      local m, rep = data.read_features(f, { ids = x:items() })
      assert.equals(2, rep.rows)
      assert.equals(3, #x:items()) -- i9 added: a cold-start item
      local nr, nf = m:shape()
      assert.equals(3, nr)
      assert.equals(3, nf)
      assert.equals(m:users(), x:items())
      local feats, ws = m:row(2)
      assert.same({ 1, 2 }, feats)
      assert.same({ 1, 0.5 }, ws)
      assert.equals("year", m:items():get(2))
      assert.equals(0, #m:row(1))
    end)

    it("reads CSV id,feature,weight rows", function()
      local f = channel("user_features", { content_type = "text/csv" })
      write(f.path .. "/f.csv", "u1,age_30,1\nu1,city_x,0.5\n")
      local ids = core.idmap()
      local m = data.read_features(f, { ids = ids })
      assert.equals(1, #ids)
      assert.equals(2, m:nnz())
    end)
  end)

  it("logs the CSV layout it took: delimiter, header, columns", function()
    local c = channel("train")
    -- Instacart's order_products: column 3 is a rank, taken as the weight
    -- by position; the log line is where that shows.
    write(c.path .. "/op.csv", "order_id,product_id,add_to_cart_order\n2,33120,1\n")
    write(c.path .. "/tail.csv", "order_id,product_id,add_to_cart_order\n3,9327,3\n")
    local ok, x, said = logged("info", data.read, c)
    assert.is_true(ok, tostring(x))
    assert.matches("2 interactions (delimiter ',', header; columns: user 1, "
                   .. "item 2, weight 3)", said[#said], 1, true)
    ok, x, said = logged("info", data.read, c, { columns = { weight = false },
                                                delimiter = ",", header = true })
    assert.is_true(ok, tostring(x))
    assert.matches("columns: user 1, item 2, weight none)", said[#said], 1, true)
  end)

  it("warns before reading a named pipe in a File-mode channel", function()
    local c = channel("train")
    sh("mkdir -p '" .. c.path .. "'")
    assert(core.mkfifo(c.path .. "/fifo.csv"))
    sh("sh -c 'sleep 0.2; printf \"user,item\\na,b\\n\" > " .. c.path
       .. "/fifo.csv' &")
    local ok, x, said = logged("warn", data.read, c)
    assert.is_true(ok, tostring(x))
    assert.equals(1, x:nnz())
    assert.equals(1, #said)
    assert.matches("channel 'train': fifo.csv is a named pipe; reading "
                   .. "waits until a writer opens it", said[1], 1, true)
  end)

  describe("Pipe mode", function()
    it("reads epochs from FIFOs fed by another process, then a regular "
       .. "file", function()
      local base = tmp .. "/data/train"
      sh("mkdir -p '" .. tmp .. "/data'")
      write(tmp .. "/src.csv", "user,item\na,b\nc,d\n")
      assert(core.mkfifo(base .. "_0"))
      sh("sh -c 'sleep 0.2; cat " .. tmp .. "/src.csv > " .. base
         .. "_0' &")
      local c = channel("train", { mode = "Pipe" })
      local ep = data.open_epochs(c, { wait_timeout = 10 })
      local x, rep = ep:next_epoch()
      assert.equals(2, rep.rows)
      assert.equals(2, x:nnz())
      assert.equals(1, ep:epoch())
      -- Epoch 1 comes later, as a regular file with the pipe's name.
      sh("sh -c 'sleep 0.3; printf \"e,f\\n\" > " .. base .. "_1.tmp; mv "
         .. base .. "_1.tmp " .. base .. "_1' &")
      local y = ep:next_epoch()
      assert.equals(1, y:nnz())
      -- Nothing for epoch 2: a stop ends the wait.
      core.stop_request()
      local z, why = ep:next_epoch()
      assert.is_nil(z)
      assert.equals("stopped", why)
      core.stop_reset()
      -- And a timeout is a DataError.
      local msg = data_error(function()
        data.open_epochs(channel("absent", { mode = "Pipe" }),
                         { wait_timeout = 0.2 }):next_epoch()
      end)
      assert.matches("absent_0", msg, 1, true)
      ep:close()
    end)

    it("unwraps RecordIO and reads epoch 0 through read()", function()
      local base = tmp .. "/data/train"
      local function rec(payload)
        local pad = (4 - #payload % 4) % 4
        return string.pack("<I4I4", 0xCED7230A, #payload) .. payload
               .. string.rep("\0", pad)
      end
      write(base .. "_0", rec("a,b,2") .. rec("c,d,3\n"))
      local c = channel("train", { mode = "Pipe", record_wrapper = "RecordIO" })
      local x, rep = data.read(c)
      assert.equals(2, rep.rows)
      assert.equals(3, weight(x, "c", "d"))
      write(base .. "_0", rec("a,b,2") .. "junk")
      local msg = data_error(function() data.read(c) end)
      assert.matches("channel 'train'", msg, 1, true)
    end)
  end)
end)

describe("moonfm.core IdMap and Interactions", function()
  it("maps ids", function()
    local m = core.idmap { "a", "b" }
    assert.equals(2, m:size())
    assert.equals(2, #m)
    assert.equals(3, m:add("c"))
    assert.equals(1, m:add("a"))
    assert.equals(2, m:find("b"))
    assert.is_nil(m:find("z"))
    assert.equals("c", m:get(3))
    assert.equals(4, m:add(2)) -- integers are their decimal text
    assert.equals("2", m:get(4))
    assert.same({ "a", "b", "c", "2" }, m:ids())
    assert.has_error(function() m:get(5) end)
    assert.matches("moonfm.IdMap (4 ids)", tostring(m), 1, true)
    m:close()
    assert.has_error(function() m:size() end)
    do local n <close> = core.idmap() end
  end)

  it("builds interactions from triplets", function()
    local u, i = core.idmap(), core.idmap { "x" }
    local t = core.interactions_from_triplets(u, i, { "a", "b", "a", "a" },
                                              { "x", "y", 1, "y" },
                                              { 1, 2, 3, 4 })
    assert.same({ 2, 2 }, { t:shape() })
    assert.equals(3, t:nnz())
    local items, ws = t:row(1)
    assert.same({ 1, 2 }, items)
    assert.same({ 4, 4 }, ws)
    assert.equals(u, t:users())
    assert.matches("2 users x 2 items, 3 interactions", tostring(t), 1, true)
    assert.has_error(function()
      core.interactions_from_triplets(u, i, { 7 }, { 1 })
    end)
    assert.has_error(function() t:resized(1, 1) end)
    t:close()
    assert.has_error(function() t:nnz() end)
  end)

  it("returns fail, msg, kind for files it cannot read", function()
    local x, msg, kind = core.read_interactions({ "/nonexistent/f.csv" },
                                                { channel = "c" })
    assert.is_nil(x)
    assert.matches("channel 'c': cannot open /nonexistent/f.csv", msg, 1,
                   true)
    assert.equals("io", kind)
    assert.has_error(function()
      core.read_interactions({}, { format = "xml" })
    end)
    assert.has_error(function()
      core.read_interactions({}, { columns = { user = 0 } })
    end)
    assert.has_error(function() core.read_interactions({}, { bogus = 1 }) end)
  end)
end)
