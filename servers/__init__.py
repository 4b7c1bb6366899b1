"""tokenbench servers: one transport-free token core (``servers.core``), one module per transport."""
