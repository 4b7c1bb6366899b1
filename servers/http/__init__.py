"""What the HTTP transports' stacks share: the stock FastAPI app (``app``, ``openapi``,
``web``), the lean front (``lean``), the floor server (``floor``, ``prompt``) and granian
(``granian``)."""
