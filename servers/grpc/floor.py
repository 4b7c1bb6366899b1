"""gRPC, floor stack: the lean stack's HTTP/2 server (servers/grpc/lean.py) with token streams on
the wheel (servers/pacing/wheel.py) instead of a task each.

Wire: as servers/grpc/lean.py (proto/tokens.proto, gRPC PROTOCOL-HTTP2.md, docs/protocol.md), the
same frames from servers/grpc/wire.py. What differs is who writes them: a ``StreamTokens`` call
opens its stream (one short task, as every unary call), then a flow writes each tick's DATA
frames in one write. Flow control (RFC 9113 §6.9): a batch the window cannot take waits on the
connection, its flow paused, until a WINDOW_UPDATE or SETTINGS frees room; a full socket
(``pause_writing``) pauses every flow of the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

import h2.events
import h2.exceptions

from proto import tokens_pb2 as pb
from servers.base import Context, ServerConfig
from servers.grpc import lean
from servers.grpc.wire import OK, UNAVAILABLE, Messages, status, stopped_trailer
from servers.pacing.wheel import Flow, get_wheel

NAME = "grpc"
LOOP = "uvloop"


class Conn(lean.Conn):
    """rpc_lean's connection; its token streams are flows."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.flows: dict[int, Flow[tuple[bytes, int]]] = {}
        self.waiting: dict[int, list[tuple[bytes, int]]] = {}  # batches held for window
        self.full = False  # the socket's write buffer is over its high-water mark
        # trailers of streams whose flow ended, until their held frames are out
        self.ending: dict[int, tuple[int, str, list[tuple[str, str]]]] = {}

    def busy(self) -> bool:
        return bool(self.tasks or self.flows)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for flow in list(self.flows.values()):
            flow.close()
        self.flows.clear()

    def pause_writing(self) -> None:
        self.full = True
        for flow in self.flows.values():
            flow.pause()

    def resume_writing(self) -> None:
        self.full = False
        for sid, flow in list(self.flows.items()):
            if sid not in self.waiting:
                flow.resume()

    def _event(self, ev: Any) -> None:
        super()._event(ev)
        if isinstance(ev, h2.events.StreamReset) and ev.stream_id in self.flows:
            self.flows.pop(ev.stream_id).close()
            self.waiting.pop(ev.stream_id, None)
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for sid in list(self.waiting):
                self._send(sid, [])

    def _send(self, sid: int, batches: list[tuple[bytes, int]]) -> bool:
        """Write what is held for ``sid`` and ``batches``, as far as the windows allow; the
        rest waits (its flow paused). True if nothing is left waiting."""
        queue = self.waiting.pop(sid, []) + batches
        h2c, out = self.h2, []
        while queue and h2c.local_flow_control_window(sid) >= queue[0][1]:
            data, payload = queue.pop(0)
            h2c.outbound_flow_control_window -= payload  # h2's books, as send_data keeps them
            h2c._get_stream_by_id(sid).outbound_flow_control_window -= payload
            out.append(data)
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))
        flow = self.flows.get(sid)
        if queue:
            self.waiting[sid] = queue
            if flow is not None:
                flow.pause()
            return False
        if flow is not None and flow.paused and not self.full:
            flow.resume()
        elif flow is None:  # its flow had ended: the trailers waited for these frames
            self._trailers(sid)
        return True

    def _trailers(self, sid: int) -> None:
        code, why, extra = self.ending.pop(sid, (OK, "", []))
        with suppress(h2.exceptions.H2Error):  # the client reset the stream meanwhile
            self.h2.send_headers(sid, status(code, why) + extra, end_stream=True)
        self.flush()

    async def _stream_tokens(self, sid: int, request: pb.StreamRequest) -> None:
        ctx = self.ctx
        if (opened := await self.open_stream(sid, request)) is None:
            return
        feed, after = opened
        flow: Flow[tuple[bytes, int]]

        def emit(batches: list[tuple[bytes, int]]) -> None:
            self._send(sid, [b for b in batches if b[1]])

        def on_end(drained: bool) -> None:
            self.flows.pop(sid, None)
            if drained:
                self.ending[sid] = (UNAVAILABLE, "server shutting down; resume", [])
            else:
                self.ending[sid] = (OK, "", stopped_trailer(flow.stream))
            if sid not in self.waiting:  # else the trailers follow the frames held
                self._trailers(sid)

        flow = Flow(ctx, get_wheel(), feed, after, Messages(sid), emit, on_end)
        self.flows[sid] = flow
        flow.start()


def settings(cfg: ServerConfig) -> dict[str, Any]:
    out = lean.settings(cfg)
    out["effective"] = {
        **out["effective"],
        "server": "h2 on uvloop, streams on the wheel (servers/grpc/floor.py)",
        "pacing": "one timer wheel per process",
    }
    return out


async def serve(ctx: Context, on_ready: Callable[[], None]) -> None:
    await lean.serve(ctx, on_ready, conn=Conn)
