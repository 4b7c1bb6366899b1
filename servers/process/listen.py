"""Listening sockets shared by worker processes through ``SO_REUSEPORT``.

The supervisor binds one socket without listening to reserve the port (port 0 picks a free
one); each worker then binds and listens on its own socket on that port. The kernel hashes each
new connection to one listening socket, so workers get an even share, and each stays under the
per-process open-file limit.
"""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a reuse-port socket; ``getsockname()[1]`` is the port to share."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_sockets(hosts: list[str], port: int, backlog: int) -> list[socket.socket]:
    """One worker's listening sockets on the reserved port, one per address."""
    out = []
    for host in hosts:
        sock = reserve_port(host, port)
        sock.listen(backlog)
        sock.setblocking(False)
        out.append(sock)
    return out
