local s = {
  protocols = { "a" },
  idle_timeout = "soon",
}
return s
