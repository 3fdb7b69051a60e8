local s = { path = "/t/:x/:x" }
return s
