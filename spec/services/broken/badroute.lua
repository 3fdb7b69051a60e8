return {
  http = {
    ["FETCH /x"] = function() return 200 end,
  },
}
