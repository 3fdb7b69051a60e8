-- context_takeover = "no" is a string, and true to Lua: refused.
return {
  compression = {
    level = 1,
    context_takeover = "no",
  },
}
