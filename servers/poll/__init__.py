"""HTTP long polling, one module per stack: ``stock`` (FastAPI), ``lean``, ``floor``."""
