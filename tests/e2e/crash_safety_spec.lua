-- Crash safety (issue 7): training killed with SIGKILL at random moments
-- never leaves a file that is neither valid nor a temporary that the next
-- start removes, and training always resumes.  MOONFM_CRASH_ROUNDS sets
-- the number of rounds (30 in CI; more by hand).
local e2e = require "support.e2e"
local lfs = require "lfs"

local ROUNDS = tonumber(os.getenv("MOONFM_CRASH_ROUNDS")) or 30

local function files(dir)
  local out = {}
  if lfs.attributes(dir, "mode") ~= "directory" then return out end
  for f in lfs.dir(dir) do
    if f ~= "." and f ~= ".." then out[#out + 1] = f end
  end
  return out
end

describe("training killed with SIGKILL", function()
  it(("leaves only valid files or temporaries, and resumes (%d rounds)"):format(ROUNDS), function()
    local d = e2e.tmpdir("crash")
    -- Large enough that saves take a noticeable share of the time.
    local rows = { "user,item" }
    for u = 1, 2000 do
      for i = 1, 20 do rows[#rows + 1] = ("u%d,i%d"):format(u, (u * 31 + i * 17) % 3000) end
    end
    e2e.write(d .. "/train.csv", table.concat(rows, "\n") .. "\n")
    local b = d .. "/tree"
    local code = e2e.run({ "init-local", b, "epochs=100000", "factors=64",
                           "baseline=false", "checkpoint_keep=2",
                           "--channel", "train=" .. d .. "/train.csv" })
    assert.are.equal(0, code)
    math.randomseed(7)
    local resumed, temporaries = 0, 0
    for round = 1, ROUNDS do
      local delay = 0.15 + math.random() * 0.6
      local cmd = string.format("cd %s && env SAGEMAKER_BASE_DIR=%s SAGEMAKER_PROGRAM=train.lua "
        .. "%s train > %s/out-%d 2> %s/err-%d & pid=$!; sleep %.3f; kill -KILL $pid; "
        .. "wait $pid 2>/dev/null; true", e2e.quote(d), e2e.quote(b), e2e.quote(e2e.exe),
        d, round, d, round, delay)
      os.execute(cmd)
      local err = e2e.read(d .. "/err-" .. round) or ""
      if err:match("resumed from") then resumed = resumed + 1 end
      for _, dir in ipairs { b .. "/model", b .. "/checkpoints" } do
        for _, f in ipairs(files(dir)) do
          local path = dir .. "/" .. f
          if f:match("^%.moonfm%-tmp%-") then
            temporaries = temporaries + 1
          elseif f:match("%.moonfm$") then
            local icode, _, ierr = e2e.run({ "inspect", path })
            assert.are.equal(0, icode, ("round %d: %s: %s"):format(round, path, ierr))
          end
        end
      end
    end
    -- A last run, stopped cleanly with SIGTERM: temporaries removed at
    -- start, training resumed, a valid model written, exit 0.
    local cmd = string.format("cd %s && env SAGEMAKER_BASE_DIR=%s SAGEMAKER_PROGRAM=train.lua "
      .. "%s train > %s/out-final 2> %s/err-final & pid=$!; "
      .. "for i in $(seq 300); do grep -q 'epoch=' %s/out-final 2>/dev/null && break; sleep 0.1; done; "
      .. "kill -TERM $pid; wait $pid; echo $? > %s/code-final",
      e2e.quote(d), e2e.quote(b), e2e.quote(e2e.exe), d, d, d, d)
    os.execute(cmd)
    local err = e2e.read(d .. "/err-final")
    assert.are.equal("0", e2e.read(d .. "/code-final"):match("%d+"), err)
    assert.matches("resumed from", err, 1, true)
    assert.is_true(resumed > 0, "no killed round resumed from a checkpoint")
    for _, dir in ipairs { b .. "/model", b .. "/checkpoints" } do
      for _, f in ipairs(files(dir)) do
        assert.is_nil(f:match("^%.moonfm%-tmp%-"), "temporary left after a clean start: " .. f)
      end
    end
    assert.are.equal(0, (e2e.run({ "inspect", b .. "/model/model.moonfm" })))
    print(("# %d rounds, %d resumed, %d temporaries seen"):format(ROUNDS, resumed, temporaries))
  end)
end)
