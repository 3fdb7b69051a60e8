-- `sandbox` takes true or false only.
return {
  sandbox = "off",
  onText = function(caller, text) caller:send(text) end,
}
