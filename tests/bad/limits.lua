-- Resource limits: a training run under a memory limit too small for its
-- data ends with the OutOfMemory category and its exit status (1), never a
-- crash.  4 million rows (62 MB) under a 200 MB address-space limit.
return {
  { id = "limits/memory-too-small-for-data", files = { ["input/data/train/part-0.csv"] = false },
    setup = function(b)
      os.execute("mkdir -p " .. b .. "/input/data/train && seq 1 4000000 | "
        .. "awk '{print \"u\"$1\",i\"$1%100000}' > " .. b .. "/input/data/train/big.csv")
    end,
    prefix = "ulimit -v 200000;",
    code = 1, first = "^OutOfMemory: the job ran out of memory" },
}
