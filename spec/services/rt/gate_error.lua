return {
  onUpgrade = function(req) error("gate broke") end,
}
