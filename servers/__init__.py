"""tokenbench servers, in layers: the token core clients share too (``servers.tokens``), the
pacing (``servers.pacing``), where tokens come from (``servers.source``), the HTTP stacks' shared
parts (``servers.http``), process supervision (``servers.process``), the topology around the
servers (``servers.topology``), and one package per transport holding its stacks
(``servers.sse``, ``servers.ws``, ``servers.grpc``, ``servers.poll``); ``servers.base`` is what
every server shares (configuration, context, interface)."""
