-- Requests to `moonfm serve` (spec section 17, docs/serving.md), sent to a
-- server of the tiny ALS model of bad_inputs_spec.lua (users u1..u3, items
-- i1..i5).  Each must get its status and a reason, and the server must keep
-- answering.
local J = "application/json"
local JL = "application/jsonlines"

local deep = ("["):rep(100000) .. ("]"):rep(100000)
local many = {}
for i = 1, 10001 do many[i] = '{"user": "u1"}' end

return {
  { id = "http/empty-body", body = "", type = J, status = 400 },
  { id = "http/invalid-json", body = '{"user": ', type = J, status = 400, reply = "invalid JSON" },
  { id = "http/top-level-array", body = '["u1"]', type = J, status = 400 },
  { id = "http/deep-nesting", body = '{"user": ' .. deep .. "}", type = J, status = 400 },
  { id = "http/nul-in-body", body = '{"user": "u\0001"}', type = J, status = 400 },
  { id = "http/invalid-utf8-id", body = '{"user": "u\255\254"}', type = J, status = 400 },
  { id = "http/unknown-user", body = '{"user": "nobody"}', type = J, status = 400,
    reply = "unknown user id" },
  { id = "http/k-negative", body = '{"user": "u1", "k": -1}', type = J, status = 400, reply = "k" },
  { id = "http/k-huge", body = '{"user": "u1", "k": 1e300}', type = J, status = 400, reply = "k" },
  { id = "http/k-fraction", body = '{"user": "u1", "k": 2.5}', type = J, status = 400, reply = "k" },
  { id = "http/k-integral-float", body = '{"user": "u1", "k": 2.0}', type = J, status = 200,
    reply = "items" },
  { id = "http/id-is-object", body = '{"user": {"id": "u1"}}', type = J, status = 400, reply = "user" },
  { id = "http/id-huge-number", body = '{"user": 1e999}', type = J, status = 400 },
  { id = "http/too-many-instances", body = '{"instances": [' .. table.concat(many, ",") .. "]}",
    type = J, status = 400, reply = "instances" },
  { id = "http/items-not-a-list", body = '{"instances": [{"user": "u1", "items": "i1"}]}',
    type = J, status = 400, reply = "items" },
  { id = "http/unknown-item", body = '{"instances": [{"user": "u1", "items": ["zz"]}]}',
    type = J, status = 400, reply = "unknown item id 'zz'" },
  { id = "http/interactions-unknown", body = '{"interactions": ["zz"]}', type = J, status = 400 },
  -- Items like an item (cosine of the item rows): not a user's request.
  { id = "http/similar-to", body = '{"similar_to": "i1", "k": 2}', type = J, status = 200,
    reply = '"items":["' },
  { id = "http/similar-to-unknown", body = '{"similar_to": "zz"}', type = J, status = 400,
    reply = "similar_to: unknown item id 'zz'" },
  { id = "http/similar-to-with-user", body = '{"similar_to": "i1", "user": "u1"}', type = J,
    status = 400, reply = "give it alone" },
  -- A user next to interactions names the new user (a batch line's id);
  -- it is still checked.
  { id = "http/interactions-named-user", body = '{"user": "new-7", "interactions": ["i1"]}',
    type = J, status = 200, reply = "items" },
  { id = "http/interactions-user-not-an-id", body = '{"user": [1], "interactions": ["i1"]}',
    type = J, status = 400, reply = "user: must be a string or an integer" },
  { id = "http/jsonlines-bad-line", body = '{"user": "u1"}\n{"user": \n', type = JL, status = 400 },
  { id = "http/csv-empty-line", body = "u1\n\n\n", type = "text/csv", status = 200 },
  { id = "http/csv-binary", body = "\0\1\2\3", type = "text/csv", status = 400 },
  { id = "http/unsupported-type", body = '{"user": "u1"}', type = "application/x-protobuf",
    status = 415, reply = "unsupported Content-Type" },
  { id = "http/empty-content-type", body = '{"user": "u1"}', type = "", status = 415,
    reply = "no Content-Type (send application/json" },
  { id = "http/unsupported-accept", body = '{"user": "u1"}', type = J, accept = "text/html",
    status = 406, reply = "unsupported Accept" },
  -- Found by the hostile-input campaign of 2026-12-05: a UTF-8 byte order
  -- mark (Windows tools) made a good request fail ("near '\239\187\191'",
  -- "unknown user id '???u1'"), and a non-object instance was named
  -- "instances[0].:".
  { id = "http/json-utf8-bom-tolerated", body = '\239\187\191{"user": "u1"}', type = J, status = 200 },
  { id = "http/csv-utf8-bom-tolerated", body = "\239\187\191u1\nu2\n", type = "text/csv", status = 200 },
  { id = "http/instance-not-an-object", body = '{"instances": [{"user": "u1"}, "u2"]}', type = J,
    status = 400, reply = "instances[1]: must be an object" },
  -- Found by the realistic-client campaign: the first type listed won
  -- whatever its q ("application/jsonlines;q=0.5, application/json" got
  -- JSON lines, "application/json;q=0" got JSON).
  { id = "http/accept-q-values", body = '{"user": "u1"}', type = J,
    accept = "application/jsonlines;q=0.5, application/json", status = 200,
    reply = '{"predictions":[' },
  { id = "http/accept-q-zero", body = '{"user": "u1"}', type = J,
    accept = "application/json;q=0", status = 406, reply = "unsupported Accept" },
  -- A CSV header announced by the type (RFC 4180) was looked up as a user.
  { id = "http/csv-header-present", body = "user_id\r\nu1\r\nu2\r\n",
    type = "text/csv; header=present", status = 200, reply = '{"predictions":[' },
  -- Messages that did not say how to fix the request: an empty body
  -- ("'[' or '{' expected near end of file"), a list of requests, TF
  -- Serving's "inputs", a CSV line of several fields.
  { id = "http/empty-body-says-so", body = " \r\n", type = J, status = 400,
    reply = "request: the body is empty" },
  { id = "http/bare-list-of-requests", body = '[{"user": "u1"}]', type = J,
    status = 400, reply = 'several go in {"instances": [...]}' },
  { id = "http/inputs-not-instances", body = '{"inputs": [{"user": "u1"}]}', type = J,
    status = 400, reply = 'several requests go in "instances"' },
  { id = "http/csv-several-fields", body = "u1,5\n", type = "text/csv", status = 400,
    reply = "text/csv takes one user id a line" },
  { id = "http/type-with-garbage-params", body = '{"user": "u1"}',
    type = "application/json; charset=\255; ;;==", status = 200 },
}
