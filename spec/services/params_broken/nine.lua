return { path = "/p/:a/:b/:c/:d/:e/:f/:g/:h/:i" }
