return { path = "/claimed" }
