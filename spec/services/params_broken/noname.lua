local s = {}
s.path = "/n/:"
return s
