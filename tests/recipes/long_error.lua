-- T5: a 5000-character error with multi-byte characters near the cut.
error(string.rep("é", 2500), 0)
