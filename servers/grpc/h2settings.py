"""h2's SETTINGS books in less memory: the lean and floor gRPC servers' connections.

Rules of this module:
- h2 keeps each setting (RFC 9113 §6.5.2) in a ``collections.deque``: its current value, then
  any sent or received but not yet acknowledged. A deque costs some 760 bytes; a connection has
  two ``Settings`` of five to seven entries, 12 KB of the 25 KB a floor gRPC connection held
  (tracemalloc: results/20261208-targets/grpc-memory/). A list holds one or two ints in 70.
- ``compact`` turns a new connection's two ``Settings`` into ``CompactSettings`` in place: the
  same values, h2's own methods, lists for deques. Nothing else of h2 changes.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import h2.settings


class _Values(list[Any]):
    """The deque operations ``h2.settings.Settings`` uses, on a list (one or two items)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class CompactSettings(h2.settings.Settings):
    """``h2.settings.Settings`` whose entries are lists."""

    def __setitem__(self, key: Any, value: int) -> None:
        super().__setitem__(key, value)  # h2 validates, and makes a deque for a new setting
        if not isinstance(items := self._settings[key], _Values):
            self._settings[key] = _Values(items)  # type: ignore[assignment]


def compact(conn: h2.connection.H2Connection) -> None:
    """Both of the connection's ``Settings`` as ``CompactSettings``, values kept."""
    for s in (conn.local_settings, conn.remote_settings):
        s._settings = {k: _Values(v) for k, v in s._settings.items()}  # type: ignore[misc]
        s.__class__ = CompactSettings
