-- Side-feature channels (user_features / item_features, docs/data.md
-- "Sparse feature rows").
local DE = "^DataError: "
local IDC = { ["inputdataconfig.json"] = '{"train":{},"item_features":{}}' }
local F = "input/data/item_features/f.txt"

local function feats(text) return { [F] = text } end

return {
  { id = "features/binary", config = IDC, files = feats("i1 \0\1\2\3:x\n"),
    code = 3, first = DE .. ".*item_features" },
  { id = "features/weight-inf", config = IDC, files = feats("i1 genre:comedy:inf\n"),
    code = 3, first = DE .. ".*item_features.*line 1" },
  { id = "features/utf16", config = IDC, files = feats("\254\255\0i\0001"),
    code = 3, first = DE .. ".*UTF%-16" },
  { id = "features/csv-empty-feature", config = IDC,
    files = { ["input/data/item_features/f.csv"] = "i1,\n" },
    code = 3, first = DE .. ".*item_features.*line 1" },
  { id = "features/csv-bad-weight", config = IDC,
    files = { ["input/data/item_features/f.csv"] = "id,feature,weight\ni1,genre,heavy\n" },
    code = 3, first = DE .. ".*item_features.*line 2" },
  -- Found by this corpus: a feature file without features (here a lone
  -- header) failed inside the model with a RecipeError.
  { id = "features/header-only-tolerated", config = IDC,
    files = { ["input/data/item_features/f.csv"] = "i1,genre,heavy\n" },
    code = 0, stderr = "names no features" },
  { id = "features/comments-only-tolerated", config = IDC,
    files = feats("# nothing here\n#\n"), code = 0, stderr = "names no features" },
  { id = "features/unknown-ids-tolerated", config = IDC,
    files = feats("i99 genre:comedy\ni1 year_1999\n"), code = 0 },
  { id = "features/10mb-line", config = IDC,
    files = feats("i1 " .. ("f "):rep(5 * 1024 * 1024) .. "\n"), code = 0 },
  -- MovieLens' movies.csv as it comes (movieId,title,genres): the genres
  -- were read as a weight; the message said only "fix the row or pass
  -- bad_rows=skip". It now says what shape feature rows have.
  { id = "features/movielens-movies-csv", config = IDC,
    files = { ["input/data/item_features/movies.csv"] =
      'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n3,"Grumpier Old Men, The (1995)",Comedy|Romance\n' },
    code = 3, first = DE .. "channel 'item_features': file movies%.csv, line 2, column 3 %(weight%).*one feature per row.*'Action|Comedy'" },
}
