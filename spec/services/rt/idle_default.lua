-- No onIdleTimeout: the server closes 1001.
return { idle_timeout = 0.5 }
