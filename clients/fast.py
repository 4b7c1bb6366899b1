"""The compiled receive path (``clients/_fastpath.c``) for the load generator, if it was built.

``tap_for(...)`` gives a reader a ``Tap`` (a transport whose record names a ``fast_path``): the
tap becomes each connection's asyncio protocol once the request is sent, so uvloop hands bytes
straight to C, which parses the head's end, the chunked event stream or the frames, and the
token JSON, and does the accounting into a process-wide ``Tally``. Whatever is not the common
case goes back to the same Python code the plain clients run. ``tokenbench bench
--no-fast-path`` turns it off. gRPC is read by the load generator's own HTTP/2 client
(clients/h2grpc.py), which hands the tap its DATA frames once a call's headers are in. Long
polling's tap reads plain answers and writes the next poll itself.

``pump()`` is the compiled event loop (``clients/_pump.c``): a tap made with it reads its
connection from one epoll set per process, which uvloop wakes once for many sockets, so a token
costs one ``recv`` and C (``tokenbench bench --no-compiled-loop`` leaves the reads to uvloop).
"""

from __future__ import annotations

from typing import Any

from servers.tokens import texts

try:
    from clients import _fastpath
except ImportError:  # no compiler at install time: the Python path does everything
    _fastpath = None  # type: ignore[assignment]

if _fastpath is not None:
    _fastpath.set_texts(
        *(tuple(t.encode() for t, _ in pool) for pool in (texts.PLAIN, texts.MULTI, texts.NEWLINE))
    )


def enabled() -> bool:
    """The extension was built and imports."""
    return _fastpath is not None


def tally() -> Any:
    """The process's accounting: tokens, wrong texts and three histograms (``take()``)."""
    assert _fastpath is not None
    return _fastpath.Tally()


def set_clock(correction_ns: int) -> None:
    """Every wall-clock reading of the compiled path adds ``correction_ns`` (bench.load.clock)."""
    if _fastpath is not None:
        _fastpath.set_clock(correction_ns)


def pump() -> Any:
    """A compiled event loop for this process's taps: ``loop.add_reader(p.fileno(), p.run)``."""
    assert _fastpath is not None
    return _fastpath.Pump()


def tap_for(
    reader: Any, mode: str, tally: Any, seed: int | None, t_post_ns: int, pump: Any = None
) -> Any:
    """Attach a tap to ``reader``: its tokens are then accounted in ``tally`` (``on_token``).
    ``mode`` is the parser, ``"sse"`` (chunked event stream), ``"ws"`` (RFC 6455 frames),
    ``"grpc"`` (HTTP/2 DATA frames of gRPC messages) or ``"poll"``: the transport record's
    ``fast_path``. With ``pump``, the tap's connections are read there."""
    assert _fastpath is not None
    tap = _fastpath.Tap(tally, reader.tap_deliver, mode, seed, t_post_ns, pump=pump)
    reader.tap = tap
    reader.on_token = tap.account
    return tap
