"""The server's HTTP and websocket routes, one module per surface. Each module's
`router(ctx)` returns an APIRouter over the app's ServerContext; app.py's `SURFACES`
lists them in the order they are mounted."""
