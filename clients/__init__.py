"""tokenbench clients: one per transport, one interface (``clients.base``).

``async for token in stream("sse", url, stream_id, after=None)`` reads a stream to its end,
resuming by itself after drops; ``await create_stream("sse", url, tokens=400, rate=40)`` makes one.
"""

from __future__ import annotations

from typing import Any

from clients.base import ClientOptions, GaveUp, Reader, StreamError, Token, reader_class, stream


async def create_stream(transport: str, url: str, **kwargs: Any) -> dict[str, Any]:
    """Create a stream the way ``transport`` does (the prompt POST, ``CreateStream``...)."""
    import transports

    return await transports.get(transport).create_fn()(url, **kwargs)


__all__ = [
    "ClientOptions", "GaveUp", "Reader", "StreamError", "Token", "create_stream", "reader_class",
    "stream",
]  # fmt: skip
