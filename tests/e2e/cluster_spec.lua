-- Multi-host jobs (issue 11; spec rules 19, 95, 98, 99, 108): several
-- `moonfm train` hosts on this machine through scripts/local-cluster, the
-- leader launching mpirun.  Needs Open MPI and root (mount namespace), as
-- CI has.
local src = os.getenv("MOONFM_SOURCE_DIR") or "."
local exe = os.getenv("MOONFM_EXE") or (src .. "/build/moonfm")
local bindir = exe:match("^(.*)/[^/]*$")
local tmp = os.getenv("MOONFM_TEST_TMP") or "/tmp"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"::status=$?\"")
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("::status=(%d+)%s*$"))
  return out:gsub("::status=%d+%s*$", ""), status
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local usable = sh("command -v mpirun && unshare -m true") and
  select(2, sh("command -v mpirun >/dev/null && unshare -m true")) == 0

local n = 0
local function cluster(hosts, args, env)
  n = n + 1
  local dir = string.format("%s/cluster-%d-%d", tmp, os.time(), n)
  os.execute("rm -rf " .. dir)
  -- timeout: a job that hangs fails this test instead of hanging ctest.
  local cmd = string.format("cd %s && PATH=%s:$PATH %s timeout -k 10 240 scripts/local-cluster "
    .. "%d tests/recipes/cluster.lua %s --channel train=data/sample/train.csv "
    .. "--channel test=data/sample/test.csv --dir %s", src, bindir, env or "",
    hosts, args, dir)
  local out, status = sh(cmd)
  if status ~= 0 then
    -- What each host said, so a failure (in CI too) explains itself.
    for i = 1, hosts do
      for _, ext in ipairs { "out", "err" } do
        local log = read(string.format("%s/algo-%d.%s", dir, i, ext)) or ""
        out = out .. string.format("\n--- algo-%d.%s (last 3000 bytes):\n%s",
                                   i, ext, log:sub(-3000))
      end
    end
  end
  return out, status, dir
end

local function final(out, name)
  return tonumber(out:match("#quality_metric: host=algo%-1, [%w_]+ "
    .. name:gsub("%p", "%%%0") .. " <%a+>=(%S+)"))
end

local describe_if = usable and describe or pending

describe_if("multi-host jobs on Open MPI", function()
  it("collectives, distributed ALS and averaging match their references "
     .. "on 2 ranks", function()
    local out, status = sh(string.format("OMPI_ALLOW_RUN_AS_ROOT=1 "
      .. "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun -np 2 "
      .. "--oversubscribe --mca btl tcp,self %s/test_dist", bindir))
    assert.equals(0, status, out)
    local _, count = out:gsub("dist %(mpi%): %d+ passed, 0 failed", "")
    assert.equals(2, count, out)
  end)

  it("ALS on 2 hosts matches one host to float tolerance", function()
    local one, s1 = cluster(1, "algorithm=als epochs=4")
    assert.equals(0, s1, one)
    local two, s2, dir = cluster(2, "algorithm=als epochs=4")
    assert.equals(0, s2, two)
    assert.matches("algo-2: exit 0", two, 1, true)
    local l1, l2 = final(one, "loss"), final(two, "loss")
    assert.is_true(math.abs(l1 - l2) <= 1e-5 * l1, l1 .. " vs " .. l2)
    local p1, p2 = final(one, "precision@10"), final(two, "precision@10")
    assert.is_true(math.abs(p1 - p2) <= 2e-3, p1 .. " vs " .. p2)
    -- Rules 99, 108: the leader alone writes the model and objective lines.
    assert.is_truthy(read(dir .. "/algo-1/model/model.mfm"))
    assert.is_nil(read(dir .. "/algo-2/model/model.mfm"))
    local leader_out = read(dir .. "/algo-1.out")
    assert.is_nil(leader_out:find("host=algo-2, test", 1, true))
    assert.is_truthy(read(dir .. "/algo-2/output/success"))
    -- Rule 99: every host's output/data goes into one archive, so only the
    -- leader's report has the plain names.
    assert.is_truthy(read(dir .. "/algo-1/output/data/metrics.json"))
    assert.is_nil(read(dir .. "/algo-2/output/data/metrics.json"))
    assert.is_truthy(read(dir .. "/algo-2/output/data/algo-2/metrics.json"))
    assert.is_truthy(read(dir .. "/algo-2/output/data/algo-2/report.html"))
  end)

  it("the factorization model trains on 2 hosts with model averaging",
     function()
    local out, status, dir = cluster(2, "algorithm=fm epochs=5")
    assert.equals(0, status, out)
    assert.matches("algo-2: exit 0", out, 1, true)
    local p = final(out, "precision@10")
    assert.is_true(p > 0.05, out)
    assert.is_truthy(read(dir .. "/algo-1/model/model.mfm"))
    assert.is_nil(read(dir .. "/algo-2/model/model.mfm"))
  end)

  it("ShardedByS3Key gives each host its own files", function()
    -- Two copies of the training file: one per host.
    local d = tmp .. "/cluster-shards"
    os.execute("rm -rf " .. d .. " && mkdir -p " .. d .. " && cp " .. src
      .. "/data/sample/train.csv " .. d .. "/part-1.csv && cp " .. src
      .. "/data/sample/train.csv " .. d .. "/part-2.csv")
    local cmd = string.format("cd %s && PATH=%s:$PATH scripts/local-cluster 2 "
      .. "tests/recipes/cluster.lua algorithm=fm epochs=3 --sharded train "
      .. "--channel train=%s --dir %s/sharded", src, bindir, d, tmp)
    local out, status = sh(cmd)
    assert.equals(0, status, out)
    assert.is_truthy(read(tmp .. "/sharded/algo-1/input/data/train/part-1.csv"))
    assert.is_nil(read(tmp .. "/sharded/algo-1/input/data/train/part-2.csv"))
    assert.is_truthy(read(tmp .. "/sharded/algo-2/input/data/train/part-2.csv"))
    assert.is_truthy(final(out, "loss"), out)
    local idc = read(tmp .. "/sharded/algo-2/input/config/inputdataconfig.json")
    assert.matches("ShardedByS3Key", idc, 1, true)
  end)

  it("a host that never appears ends the job with a clear error",
     function()
    local out, status, dir = cluster(2, "--absent algo-2",
                                     "MOONFM_DIST_WAIT=3")
    assert.equals(2, status, out)
    local f = read(dir .. "/algo-1/output/failure")
    assert.matches("^ConfigError: host algo%-2 never answered", f)
    -- And a leader that never appears, seen from the other host.
    out, status, dir = cluster(2, "--absent algo-1", "MOONFM_DIST_WAIT=3")
    assert.equals(2, status, out)
    f = read(dir .. "/algo-2/output/failure")
    assert.matches("the leader algo-1 never started the MPI job", f, 1, true)
  end)

  it("a failing host fails the job on every host", function()
    local out, status, dir = cluster(2, "fail_on=algo-2")
    assert.equals(3, status, out)
    assert.matches("^DataError: injected failure on algo%-2",
                   read(dir .. "/algo-2/output/failure"))
    assert.is_truthy(read(dir .. "/algo-2/output/data/failure-full.algo-2.txt"))
    assert.is_nil(read(dir .. "/algo-2/output/data/failure-full.txt"))
    assert.matches("the MPI job across 2 hosts failed",
                   read(dir .. "/algo-1/output/failure"), 1, true)
    assert.is_nil(read(dir .. "/algo-1/output/success"))
  end)

  it("a host that dies mid-job ends every surviving host", function()
    local out, status, dir = cluster(2, "algorithm=fm epochs=100000 "
      .. "--kill algo-2:0.5")
    assert.is_not.equals(0, status, out)
    assert.matches("killed by signal 9",
                   read(dir .. "/algo-1/output/failure"), 1, true)
    assert.matches("ended before host algo-2 finished",
                   read(dir .. "/algo-2/output/failure"), 1, true)
  end)

  -- An mpirun stand-in first on PATH: its first launches stall as Open
  -- MPI's start-up sometimes does (connected, no rank launched), later ones
  -- run the real mpirun.
  local function stalling_mpirun(stalls)
    local d = string.format("%s/stall-%d-%d", tmp, os.time(), stalls)
    os.execute("rm -rf " .. d .. " && mkdir -p " .. d)
    local f = assert(io.open(d .. "/mpirun", "w"))
    f:write(string.format([[#!/bin/sh
d=$(dirname "$0")
n=$(ls "$d" | grep -c '^stalled')
if [ "$n" -lt %d ]; then touch "$d/stalled-$n"; exec sleep 600; fi
exec /usr/bin/mpirun "$@"
]], stalls))
    f:close()
    os.execute("chmod +x " .. d .. "/mpirun")
    return d
  end

  it("a stalled MPI start is stopped and launched again", function()
    local d = stalling_mpirun(1)
    local out, status, dir = cluster(2, "algorithm=als epochs=2",
      "PATH=" .. d .. ":$PATH MOONFM_DIST_START=3")
    assert.equals(0, status, out)
    local log = read(dir .. "/algo-1.err")
    assert.matches("no rank of the MPI job started within 3 s", log, 1, true)
    assert.matches("(try 2 of 3)", log, 1, true)
    assert.is_truthy(final(out, "loss"), out)
  end)

  it("a start that keeps stalling ends every host with a clear error",
     function()
    local d = stalling_mpirun(99)
    local out, status, dir = cluster(2, "algorithm=als epochs=2",
      "PATH=" .. d .. ":$PATH MOONFM_DIST_START=2 MOONFM_DIST_START_TRIES=2 "
      .. "MOONFM_DIST_WAIT=12")
    assert.equals(2, status, out)
    assert.matches("^ConfigError: the MPI job across 2 hosts did not start: "
      .. "2 tries of 2 s each", read(dir .. "/algo-1/output/failure"))
    assert.matches("the leader algo-1 never started the MPI job",
                   read(dir .. "/algo-2/output/failure"), 1, true)
  end)
end)

-- Issue 11, second part: evaluation split over the hosts, and
-- ShardedByS3Key shards with different users and items.  Own helper (the
-- channels differ from the sample's), same timeout and logs on failure.
describe_if("multi-host evaluation and sharded training data", function()
  local all = "precision@10,recall@10,ndcg@10,map@10,hit_rate@10,"
    .. "coverage@10,mrr,auc"

  local function run(hosts, args, channels)
    n = n + 1
    local dir = string.format("%s/cluster-ev-%d-%d", tmp, os.time(), n)
    os.execute("rm -rf " .. dir)
    local out, status = sh(string.format("cd %s && PATH=%s:$PATH timeout -k "
      .. "10 120 scripts/local-cluster %d tests/recipes/cluster.lua %s %s "
      .. "--dir %s", src, bindir, hosts, args, channels, dir))
    if status ~= 0 then
      for i = 1, hosts do
        for _, ext in ipairs { "out", "err" } do
          local log = read(string.format("%s/algo-%d.%s", dir, i, ext)) or ""
          out = out .. string.format("\n--- algo-%d.%s (last 3000 bytes):"
                                     .. "\n%s", i, ext, log:sub(-3000))
        end
      end
    end
    return out, status, dir
  end

  -- The leader's "eval NAME dist=D local=L" lines (tests/recipes/cluster.lua).
  local function evals(dir)
    local t = {}
    for name, d, l in (read(dir .. "/algo-1.out") or ""):gmatch(
        "eval (%S+) dist=(%S+) local=(%S+)") do
      t[name] = { tonumber(d), tonumber(l) }
    end
    for name, d, l in (read(dir .. "/algo-1.out") or ""):gmatch(
        "eval count (%S+) dist=(%S+) local=(%S+)") do
      t["count " .. name] = { tonumber(d), tonumber(l) }
    end
    return t
  end

  local sample = "--channel train=data/sample/train.csv "
    .. "--channel test=data/sample/test.csv"
  local one_host -- ALS, 4 iterations, one host: the reference (made once)
  local function reference()
    if not one_host then
      local out, status, dir = run(1, "algorithm=als epochs=4 metrics=" .. all
        .. " compare_local=true", sample)
      assert.equals(0, status, out)
      one_host = { out = out, ev = evals(dir) }
    end
    return one_host
  end

  local function close(a, b, tol, what)
    assert.is_true(a ~= nil and b ~= nil and math.abs(a - b) <= tol,
                   string.format("%s: %s vs %s", what, tostring(a),
                                 tostring(b)))
  end

  -- Every metric of a 2-host run against the 1-host reference (the models
  -- agree to float rounding: ALS only sums its Grams in another order).
  local function like_one_host(out, ev)
    local ref = reference()
    local tol = { auc = 1e-5, mrr = 1e-3 }
    for name in all:gmatch("[^,]+") do
      close(final(ref.out, name), final(out, name), tol[name] or 2e-3, name)
    end
    for _, c in ipairs { "users", "skipped_users", "unknown_users",
                         "unknown_items", "excluded_test_items",
                         "test_items" } do
      assert.equals(ref.ev["count " .. c][1], ev["count " .. c][1], c)
    end
  end

  -- On the same model, the split evaluation is the local one exactly (up
  -- to the order of the sums).
  local function split_equals_local(ev, lines)
    local n_seen = 0
    for name, v in pairs(ev) do
      n_seen = n_seen + 1
      close(v[1], v[2], 1e-12 * math.max(1, math.abs(v[2])), name)
    end
    assert.equals(lines, n_seen, "eval lines missing")
  end

  it("evaluation split over 2 hosts gives one host's numbers", function()
    local out, status, dir = run(2, "algorithm=als epochs=4 metrics=" .. all
      .. " compare_local=true", sample)
    assert.equals(0, status, out)
    local ev = evals(dir)
    split_equals_local(ev, 14)
    like_one_host(out, ev)
    -- Rule 108: the leader alone prints them.
    assert.is_nil((read(dir .. "/algo-2.out") or ""):find("#quality_metric: "
      .. "host=algo-2, test", 1, true))
  end)

  -- Two shards with different users (and items in another first-seen
  -- order, one item missing from the second): rank 0's ids, then rank 1's
  -- new ones is the order one host reading both files sees.
  local function shards()
    local d = tmp .. "/cluster-ev-shards"
    os.execute("rm -rf " .. d .. " && mkdir -p " .. d)
    local a = assert(io.open(d .. "/part-1.csv", "w"))
    local b = assert(io.open(d .. "/part-2.csv", "w"))
    local first = true
    for line in io.lines(src .. "/data/sample/train.csv") do
      if first then
        a:write(line, "\n")
        b:write(line, "\n")
        first = false
      else
        local u = tonumber(line:match("^u(%d+),"))
        ;(u <= 500 and a or b):write(line, "\n")
      end
    end
    a:close()
    b:close()
    return d
  end

  it("ShardedByS3Key shards with different users train ALS and fm on "
     .. "2 hosts", function()
    local d = shards()
    local ch = "--sharded train --channel train=" .. d
      .. " --channel test=data/sample/test.csv"
    -- ALS: the combined shards are the sample's training set, so the
    -- result is one host's.
    local out, status, dir = run(2, "algorithm=als epochs=4 metrics=" .. all
      .. " compare_local=true", ch)
    assert.equals(0, status, out)
    -- (the ranks' logs reach the leader's through mpirun)
    local log = read(dir .. "/algo-1.err")
    assert.matches("2 hosts' shards combined: 1000 users, 1500 items, "
      .. "38721 interactions", log, 1, true)
    local ev = evals(dir)
    split_equals_local(ev, 14)
    like_one_host(out, ev)
    close(final(reference().out, "loss"), final(out, "loss"),
          1e-5 * final(out, "loss"), "loss")
    -- fm: trains on the combined data, evaluates, the leader saves.
    out, status, dir = run(2, "algorithm=fm epochs=3 metrics=precision@10,"
      .. "coverage@10,auc compare_local=true", ch)
    assert.equals(0, status, out)
    ev = evals(dir)
    split_equals_local(ev, 9)
    assert.is_true(final(out, "precision@10") > 0.05, out)
    assert.equals(reference().ev["count users"][1], ev["count users"][1])
    assert.equals(0, ev["count unknown_users"][1])
    assert.is_truthy(read(dir .. "/algo-1/model/model.mfm"))
    assert.is_nil(read(dir .. "/algo-2/model/model.mfm"))
  end)

  -- SIGTERM reaches the ranks at different moments (here 0.5 s apart): the
  -- ranks agree at their next collective and all stop after the same
  -- epoch; the leader saves (before, the rank stopped by the agreement
  -- alone failed with "stopped" as a RecipeError).
  it("a stop reaching the ranks at different moments stops them together",
     function()
    n = n + 1
    local dir = string.format("%s/cluster-ev-%d-%d", tmp, os.time(), n)
    os.execute("rm -rf " .. dir)
    sh(string.format("cd %s && (PATH=%s:$PATH timeout -k 10 120 "
      .. "scripts/local-cluster 2 recipes/train.lua algorithm=fm epochs=100000 "
      .. "threads=1 factors=8 baseline=false checkpoint_every=0 %s --dir %s "
      .. "> %s.log 2>&1 &)", src, bindir, sample, dir, dir))
    local function pid(h)
      return tonumber(read(string.format("%s/%s/state/moonfm-dist.%s.rank",
                                         dir, h, h)) or "")
    end
    local t0 = os.time()
    while not (pid("algo-1") and pid("algo-2")) and os.time() - t0 < 60 do
      os.execute("sleep 0.2")
    end
    assert.is_truthy(pid("algo-1") and pid("algo-2"), read(dir .. ".log"))
    os.execute("sleep 1; kill -TERM " .. pid("algo-2") .. "; sleep 0.5; kill "
               .. "-TERM " .. pid("algo-1") .. " 2>/dev/null")
    while not (read(dir .. "/algo-1.status") and read(dir .. "/algo-2.status"))
          and os.time() - t0 < 120 do
      os.execute("sleep 0.2")
    end
    local log = (read(dir .. ".log") or "") .. (read(dir .. "/algo-1.err")
                                                or "")
    assert.equals("0", (read(dir .. "/algo-1.status") or ""):match("%d+"), log)
    assert.equals("0", (read(dir .. "/algo-2.status") or ""):match("%d+"), log)
    local epochs = {}
    for e in log:gmatch("stop requested[^\n]-epoch (%d+)") do
      epochs[#epochs + 1] = e
    end
    assert.equals(2, #epochs, log)
    assert.equals(epochs[1], epochs[2], log)
    assert.is_truthy(read(dir .. "/algo-1/model/model.moonfm"))
    assert.is_nil(read(dir .. "/algo-1/output/failure"))
    assert.is_nil(read(dir .. "/algo-2/output/failure"))
  end)

  -- A leader that gives up on a start that keeps stalling tells the other
  -- hosts, which end at once instead of after MOONFM_DIST_WAIT (1200 s by
  -- default: local-cluster, which waits for every host, then hung until
  -- the test's timeout).
  it("a leader that gives up tells the other hosts at once", function()
    local d = string.format("%s/stall-ev-%d", tmp, os.time())
    os.execute("rm -rf " .. d .. " && mkdir -p " .. d)
    local f = assert(io.open(d .. "/mpirun", "w"))
    f:write("#!/bin/sh\nexec sleep 600\n")
    f:close()
    os.execute("chmod +x " .. d .. "/mpirun")
    local t0 = os.time()
    n = n + 1
    local dir = string.format("%s/cluster-ev-%d-%d", tmp, os.time(), n)
    local out, status = sh(string.format("cd %s && PATH=%s:%s:$PATH "
      .. "MOONFM_DIST_START=1 MOONFM_DIST_START_TRIES=1 timeout -k 10 60 "
      .. "scripts/local-cluster 2 tests/recipes/cluster.lua algorithm=als "
      .. "epochs=2 %s --dir %s", src, d, bindir, sample, dir))
    assert.equals(2, status, out)
    assert.is_true(os.time() - t0 < 40, "took " .. (os.time() - t0) .. " s")
    assert.matches("it gave up (stalled) and told this host",
                   read(dir .. "/algo-2/output/failure"), 1, true)
  end)
end)
