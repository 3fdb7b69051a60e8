return { path = "/ok/:id" }
