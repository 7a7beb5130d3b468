"""Serving the app: gunicorn settings and hooks, the uvicorn worker, the HTTP protocol, middleware, the ASGI entry."""
