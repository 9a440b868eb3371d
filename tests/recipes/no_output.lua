-- Declares an output and never writes it (rule 57).
local moonfm = require "moonfm"
moonfm.declare_output("model.moonfm")
