"""gRPC server streaming, one module per stack: ``stock`` (grpc.aio), ``lean`` and ``floor``
(our HTTP/2 server, its wire in ``wire``), and gRPC-Web for browsers (``web``)."""
