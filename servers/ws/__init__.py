"""WebSocket, one module per stack: ``stock`` (uvicorn's websockets), ``lean``, ``floor``."""
