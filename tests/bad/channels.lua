-- Data channels (spec rules 84-117, docs/data.md): missing, empty,
-- unreadable and binary files, malformed rows of every format, NUL bytes,
-- invalid UTF-8, a 10 MB line, CRLF, a header only, gzip and RecordIO
-- damage, FIFOs that close early.
local DE = "^DataError: "
local TRAIN = "input/data/train/part-0.csv"

local function idc(extra)
  return { ["inputdataconfig.json"] =
    '{"train":{"TrainingInputMode":"File"' .. (extra or "") .. '}}' }
end
local JSONL = idc(',"ContentType":"application/jsonlines"')
local RIO = idc(',"RecordWrapperType":"RecordIO"')

-- One RecordIO record: magic, flag << 29 | length, payload, padding.
local function record(payload, flag)
  local pad = (4 - #payload % 4) % 4
  return string.pack("<I4I4", 0xCED7230A, ((flag or 0) << 29) | #payload)
    .. payload .. ("\0"):rep(pad)
end

local function gzip(text)
  local h = io.popen("printf '" .. text .. "' | gzip -c")
  local s = h:read("a")
  h:close()
  return s
end

-- 256 bytes 0..255, eight times.
local binary = {}
for i = 0, 255 do binary[#binary + 1] = string.char(i) end
binary = table.concat(binary):rep(8)

local function mkfifo_writer(b, text, extra)
  -- A Pipe-mode channel whose writer sends text and closes early.
  local f = b .. "/input/data/train_0"
  os.execute("rm -rf " .. b .. "/input/data/train && mkfifo " .. f)
  os.execute("(printf '" .. text .. "' > " .. f .. ") >/dev/null 2>&1 &")
end

return {
  { id = "channel/train-folder-missing", files = { [TRAIN] = false },
    code = 3, first = DE .. ".*train" },
  { id = "channel/train-folder-empty", files = { [TRAIN] = false },
    setup = function(b) os.execute("mkdir -p " .. b .. "/input/data/train") end,
    code = 3, first = DE .. "channel 'train' has no interactions" },
  { id = "channel/empty-file", files = { [TRAIN] = "" },
    code = 3, first = DE .. "channel 'train' has no interactions" },
  { id = "channel/header-only", files = { [TRAIN] = "user,item,rating\n" },
    code = 3, first = DE .. "channel 'train' has no interactions" },
  { id = "channel/unreadable-file", files = { [TRAIN] = false },
    setup = function(b)
      os.execute("mkdir -p " .. b .. "/input/data/train && ln -s /proc/self/mem "
                 .. b .. "/input/data/train/mem.csv")
    end,
    code = 3, first = DE .. ".*mem%.csv" },
  { id = "channel/dangling-symlink", files = { [TRAIN] = false },
    setup = function(b)
      os.execute("mkdir -p " .. b .. "/input/data/train && ln -s /nonexistent "
                 .. b .. "/input/data/train/gone.csv")
    end,
    code = 3, first = DE .. ".*gone%.csv" },
  { id = "channel/binary-file", files = { [TRAIN] = binary },
    code = 3, first = DE .. ".*part%-0%.csv" },
  { id = "channel/nul-in-row", files = { [TRAIN] = "user,item\nu1,i\0001\nu2,i2\n" },
    code = 3, first = DE .. ".*line 2" },
  { id = "channel/utf16-file", files = { [TRAIN] = "\255\254u\0,\0i\0\n\0" },
    code = 3, first = DE .. ".*UTF%-16" },
  { id = "channel/invalid-utf8-ids-tolerated",
    files = { [TRAIN] = "user,item\nu\255\254,i1\nu2,i\192\128\nu3,i1\n" }, code = 0 },
  { id = "channel/crlf-tolerated",
    files = { [TRAIN] = "user,item\r\nu1,i1\r\nu2,i2\r\nu1,i2\r\n" }, code = 0 },
  { id = "channel/csv-empty-id", files = { [TRAIN] = "user,item\nu1,i1\nu2,\n" },
    code = 3, first = DE .. ".*line 3, column 2 %(item%): empty id" },
  { id = "channel/csv-one-field", files = { [TRAIN] = "user,item\nu1,i1\nlonely\n" },
    code = 3, first = DE .. ".*line 3" },
  { id = "channel/csv-bad-weight", files = { [TRAIN] = "user,item,rating\nu1,i1,5\nu2,i2,lots\n" },
    code = 3, first = DE .. ".*line 3, column 3" },
  { id = "channel/csv-weight-overflows-float", files = { [TRAIN] = "user,item,rating\nu1,i1,1e39\n" },
    code = 3, first = DE .. ".*line 2, column 3" },
  { id = "channel/csv-weight-nan", files = { [TRAIN] = "user,item,rating\nu1,i1,nan\n" },
    code = 3, first = DE .. ".*line 2, column 3" },
  { id = "channel/csv-unterminated-quote", files = { [TRAIN] = 'user,item\n"u1,i1\nu2,i2\n' },
    code = 3, first = DE .. ".*line 2" },
  { id = "channel/tsv-missing-column", files = { ["input/data/train/part-0.tsv"] = "user\titem\nu1\n", [TRAIN] = false },
    code = 3, first = DE .. ".*line 2" },
  { id = "channel/10mb-single-line", files = { [TRAIN] = ("x"):rep(10 * 1024 * 1024) },
    code = 3, first = DE .. ".*line 1" },
  { id = "channel/10mb-id-tolerated",
    files = { [TRAIN] = "user,item\nu1," .. ("i"):rep(10 * 1024 * 1024) .. "\nu2,i2\n" }, code = 0 },
  { id = "channel/unknown-content-type",
    config = idc(',"ContentType":"application/x-parquet"'),
    code = 3, first = DE .. ".*application/x%-parquet" },
  { id = "channel/jsonl-invalid-json", config = JSONL,
    files = { [TRAIN] = '{"user": "u1", "item": "i1"}\n{"user": "u2", "item": \n' },
    code = 3, first = DE .. ".*line 2" },
  { id = "channel/jsonl-missing-item", config = JSONL,
    files = { [TRAIN] = '{"user": "u1", "item": "i1"}\n{"user": "u2"}\n' },
    code = 3, first = DE .. ".*line 2" },
  { id = "channel/jsonl-id-is-object", config = JSONL,
    files = { [TRAIN] = '{"user": {"id": 1}, "item": "i1"}\n' },
    code = 3, first = DE .. ".*line 1.*user" },
  { id = "channel/jsonl-bad-weight", config = JSONL,
    files = { [TRAIN] = '{"user": "u1", "item": "i1", "weight": "heavy"}\n' },
    code = 3, first = DE .. ".*weight" },
  { id = "channel/jsonl-not-an-object", config = JSONL,
    files = { [TRAIN] = '["u1", "i1"]\n' }, code = 3, first = DE .. ".*line 1" },
  { id = "channel/jsonl-bad-escape", config = JSONL,
    files = { [TRAIN] = '{"user": "u\\ud800", "item": "i\\q"}\n' }, code = 3, first = DE .. ".*line 1" },
  { id = "channel/recordio-bad-magic", config = RIO,
    files = { [TRAIN] = ("\0"):rep(16) }, code = 3, first = DE .. ".*magic" },
  { id = "channel/recordio-truncated", config = RIO,
    files = { [TRAIN] = record("user,item\nu1,i1\n"):sub(1, 14) },
    code = 3, first = DE .. ".*truncated" },
  { id = "channel/recordio-stray-continuation", config = RIO,
    files = { [TRAIN] = record("user,item\nu1,i1\n", 2) },
    code = 3, first = DE .. ".*continuation" },
  { id = "channel/gzip-truncated",
    files = { [TRAIN] = gzip("user,item\\nu1,i1\\nu2,i2\\n"):sub(1, 20) },
    code = 3, first = DE .. ".*part%-0%.csv" },
  { id = "channel/gzip-corrupt",
    files = { [TRAIN] = "\31\139\8\0" .. ("\255"):rep(60) },
    code = 3, first = DE .. ".*part%-0%.csv" },
  { id = "channel/validation-malformed",
    config = { ["inputdataconfig.json"] = '{"train":{},"validation":{}}' },
    files = { ["input/data/validation/v.csv"] = "user,item\nu1,\n" },
    code = 3, first = DE .. ".*validation.*line 2" },
  { id = "channel/skip-but-all-bad", hp = { epochs = "1", bad_rows = "skip", max_bad_rows = "2" },
    files = { [TRAIN] = "user,item\nu1,\nu2,\nu3,\nu4,i1\n" },
    code = 3, first = DE .. ".*train" },
  { id = "channel/fifo-closes-mid-row",
    config = { ["inputdataconfig.json"] = '{"train":{"TrainingInputMode":"Pipe"}}' },
    files = { [TRAIN] = false },
    setup = function(b) mkfifo_writer(b, "user,item\\nu1,i1\\nu2,") end,
    code = 3, first = DE .. ".*train.*empty id" },
  { id = "channel/fifo-closes-at-once",
    config = { ["inputdataconfig.json"] = '{"train":{"TrainingInputMode":"Pipe"}}' },
    files = { [TRAIN] = false },
    setup = function(b) mkfifo_writer(b, "") end,
    code = 3, first = DE .. "channel 'train' has no interactions" },
  -- Found by the hostile-input campaign of 2026-12-05 (spec rule 62): files
  -- that are not text moonfm reads failed with a row error on bytes that
  -- were never rows ("expected at least 2 fields", "expected a JSON
  -- object ... pass bad_rows=skip") or with "has no interactions".
  { id = "channel/bzip2-file", files = { [TRAIN] = false,
      ["input/data/train/r.csv.bz2"] = "BZh91AY&SY\x9a\x1e\x02\x11\0\0\1" },
    code = 3, first = DE .. ".*r%.csv%.bz2, line 1: the file is bzip2%-compressed" },
  { id = "channel/xz-file", files = { [TRAIN] = "\xfd7zXZ\0\0\4\xe6\xd6\xb4\x46" },
    code = 3, first = DE .. ".*the file is xz%-compressed" },
  { id = "channel/zstd-file", files = { [TRAIN] = "\x28\xb5\x2f\xfd\x04\x58\x89" },
    code = 3, first = DE .. ".*the file is zstd%-compressed" },
  { id = "channel/zip-file", files = { [TRAIN] = "PK\3\4\20\0\0\0\8\0" },
    code = 3, first = DE .. ".*the file is a zip archive" },
  { id = "channel/parquet-file", files = { [TRAIN] = "PAR1\x15\4\x15\0" },
    code = 3, first = DE .. ".*the file is a Parquet file" },
  { id = "channel/magic-like-ids-tolerated",
    files = { [TRAIN] = "PAR1,BZh9\nORC,i2\nu3,i1\n" }, code = 0 },
  { id = "channel/cr-only-line-ends", files = { [TRAIN] = "user,item\ru1,i1\ru2,i2\r" },
    code = 3, first = DE .. ".*line 1: the file is text whose lines end with a carriage return" },
  { id = "channel/jsonl-utf16", config = JSONL,
    files = { [TRAIN] = "\255\254{\0\"\0u\0\"\0:\0\"\0x\0\"\0}\0\n\0" },
    code = 3, first = DE .. ".*UTF%-16" },
  { id = "channel/json-array-file", files = { [TRAIN] = false,
      ["input/data/train/data.json"] = '[{"user": "u1", "item": "i1"},\n {"user": "u2", "item": "i2"}]\n' },
    code = 3, first = DE .. ".*data%.json, line 1: the file is one JSON array, not JSON lines" },
  { id = "channel/jsonl-pretty-printed", config = JSONL,
    files = { [TRAIN] = '{\n  "user": "u1",\n  "item": "i1"\n}\n' },
    code = 3, first = DE .. ".*line 1: the file is JSON written over several lines" },
  -- One read, one format: a JSON lines file next to the CSV one failed on
  -- its first row as CSV ("unexpected text after a closing quote").
  { id = "channel/mixed-formats",
    files = { ["input/data/train/z.jsonl"] = '{"user": "u9", "item": "i9"}\n' },
    code = 3, first = DE .. "channel 'train' mixes file formats: part%-0%.csv %(CSV%) and z%.jsonl" },
  -- An unpacked download's README in the channel is read as data too:
  -- the row error says so.
  { id = "channel/readme-in-channel",
    files = { ["input/data/train/README"] = "Ratings of our shop\nexported nightly by the etl job\n" },
    code = 3, first = DE .. ".*file README, line 2.*README looks like documentation",
    stderr = "README looks like documentation, but every file" },
  -- Each weight fits a float, their sum does not: no infinite weight may
  -- reach the model (it would train to NaN and save it).
  { id = "channels/repeated-rows-sum-overflows",
    files = { [TRAIN] = "user,item,rating\nu1,i1,3e38\nu1,i1,3e38\nu2,i2,1\n" },
    code = 3, first = DE .. "channel 'train': the rows of user 'u1' and item 'i1' repeat" },
  -- Finite weights, but ALS's confidence 1 + alpha * 3e38 is not: the loss
  -- is NaN after the first epoch, and the job says so there.
  { id = "channels/als-weight-diverges",
    hp = { epochs = "3", algorithm = "als", alpha = "10" },
    files = { [TRAIN] = "user,item,rating\nu1,i1,3e38\nu2,i2,1\nu1,i2,2\nu3,i1,1\n" },
    code = 1, first = "^RecipeError: training diverged in epoch 1" },
  -- Files of public datasets whose third column is no weight: the first
  -- line was taken as a header (its third field is not a number) and the
  -- second failed as a bad row, with bad_rows=skip as the advice.  Now
  -- one layout error says the column holds no weights and what to set.
  { id = "channel/lastfm-360k-artist-name-column",
    files = { [TRAIN] = "00000c28\t3bd73256-3905\tbetty blowtorch\t2137\n"
                        .. "00000c28\t\tdie \xc3\x84rzte\t1099\n" },
    code = 3, first = DE .. ".*line 2: column 3 is not a number here %(\"die .*nor on the first line, which was therefore taken as a header.*weight_column=.*header=absent" },
  { id = "channel/steam-200k-behaviour-column", hp = { epochs = "1", bad_rows = "skip" },
    files = { [TRAIN] = '151603712,"Fallout 4",purchase,1.0,0\n151603712,"Fallout 4",play,87.0,0\n' },
    code = 3, first = DE .. ".*line 2: column 3 is not a number here %(\"play\"%)" },
  { id = "channel/steam-200k-as-documented",
    hp = { epochs = "1", header = "absent", weight_column = "4" },
    files = { [TRAIN] = '151603712,"Fallout 4",purchase,1.0,0\n151603712,"Fallout 4",play,87.0,0\n59945701,"Spore",purchase,1.0,0\n' },
    code = 0 },
  -- The Netflix Prize's combined_data_1.txt: "1:" lines between the
  -- rows; it failed with "is the delimiter ',' right?".
  { id = "channel/netflix-prize-layout",
    files = { [TRAIN] = "1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n885013,4,2005-10-19\n" },
    code = 3, first = DE .. ".*line 1: the file is in the Netflix Prize layout.*awk" },
  -- Weights of 0 or less: fm's warp trained 2 epochs on no positive at
  -- all and saved a model (exit 0); ALS failed as a RecipeError (exit 1,
  -- "als fit: als fit: weight -1 of interaction 0 ...").
  { id = "channel/all-weights-zero-warp",
    files = { [TRAIN] = "user,item,rating\nu1,i1,0\nu1,i2,0\nu2,i1,0\n" },
    code = 3, first = DE .. "channel 'train': no interaction has a weight > 0 %(3 interactions.*loss=warp" },
  { id = "channel/negative-weights-als", hp = { epochs = "1", algorithm = "als" },
    files = { [TRAIN] = "user,item,rating\nu1,i1,-1\nu1,i2,2\nu2,i1,3\n" },
    code = 3, first = DE .. "channel 'train': 1 of 3 interactions have a negative weight.*ALS needs weights >= 0" },
  -- Book-Crossing: 0 means an implicit rating; warp trains on the rest
  -- and says so.
  { id = "channel/book-crossing-implicit-zeros",
    files = { [TRAIN] = '"User-ID";"ISBN";"Book-Rating"\r\n"276725";"034545104X";"0"\r\n'
                        .. '"276726";"0155061224";"5"\r\n"276729";"052165615X";"3"\r\n"276747";"3442\xe9t\xe9";"9"\r\n' },
    code = 0, stderr = "1 of 4 interactions have a weight of 0 or less; loss=warp" },
}
