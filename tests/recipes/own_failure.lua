-- T6: the recipe writes its own failure file, then fails.
local moonfm = require "moonfm"
local f = assert(io.open(moonfm.env().output_dir .. "/failure", "w"))
f:write("DataError: my own precise reason\n")
f:close()
error("generic message")
