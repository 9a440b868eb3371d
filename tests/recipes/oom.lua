-- Allocates until memory runs out (run under a ulimit).
local t = {}
for i = 1, math.huge do t[i] = string.rep("x", 1024 * 1024, tostring(i)) end
