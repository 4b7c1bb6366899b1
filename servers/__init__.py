"""tokenbench servers: one transport-free token core (``servers.core``), a module per transport."""
