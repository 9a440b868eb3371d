-- An example sweep: `moonfm sweep sweep-example.lua` from any folder (a
-- bundled sweep file is found by name; copy it to change it).
-- It tunes the default factorization recipe (train.lua) on the bundled
-- sample data: 8 trials, 2 at a time, one thread each, about a few minutes
-- on 2 cores.  Results go to ./sweeps/sweep-example-<time>/ under the
-- current folder (or --out DIR).  See docs/tuning.md for every key.
return {
  recipe = "train.lua",          -- next to this file, or a bundled recipe
  -- channels = { train = "data/train.csv", test = "data/test.csv" },
  -- (relative to this file; without it, the bundled sample data)
  fixed = { epochs = 10, threads = 1, k = 10, seed = 42 },
  space = {
    learning_rate = { "log_uniform", 0.01, 0.2 },
    factors = { "choice", 16, 32, 64 },
    loss = { "grid", "warp", "bpr" },
  },
  trials = 8, seed = 7, parallel = 2,
  objective = { metric = "test:precision@10", maximize = true },
  early_stopping = { rule = "median", min_epochs = 3, min_trials = 3 },
}
