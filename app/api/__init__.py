"""HTTP glue: routers, dependencies, middleware, upload reading and error handlers."""
