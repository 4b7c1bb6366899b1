"""Server-Sent Events, one module per stack: ``stock`` (sse-starlette), ``lean``, ``floor``."""
