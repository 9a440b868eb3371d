local M = {}
function M.main(args) print("moonfm", require("moonfm.core")._VERSION) return 0 end
return M
