return {
  origins = { "https://good.example", "http://localhost:3000" },
  onOpen = function(caller) caller:send("welcome") end,
}
