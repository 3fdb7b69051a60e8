local s = {}
s.http = {
  ["GET /:a"] = function() return 200 end,
  ["GET /:b"] = function() return 200 end,
}
return s
