"""The stop button, measured: ``tokenbench stop --transport T --users N``.

Each user makes an answer (the prompt POST), reads it with its transport's client and, at a
seeded random moment ``PRESS_S`` into it, presses stop (docs/protocol.md, "Stop"): SSE and
long polling by a request of their own (a new connection, as a page whose other connections
are busy), WebSocket in-band, gRPC by ``StopStream`` on the reader's channel. Users run at
once, their presses spread over the window. Per user:

- ``stop_to_last_ms``: the press to the last token the reader received (0: none came after it);
- ``stop_to_end_ms``: the press to the reader reading the end (the end message, or gRPC's
  status with its trailer), timed by the reader as it reads it;
- ``model_stop_ms``: the press to when generation stopped (the end's ``stopped``, on the
  server's clock; this runs on loopback, where the clocks are one);
- ``wasted``: tokens made after the press (their ``t``, the model's time, is later than the
  press) that reached the reader: all of them do, before the end;
- ``answered_ms``: the press to the stop's own answer (the 202, StopStream's reply; a
  WebSocket's frame is answered by nothing but the end: its write);
- a read resumed from the last token after the stop: the tokens it got (0 is right).

A user counts as stopped only when its end says ``stopped`` within ``END_S`` of the press;
an answer that ran to its end, or an error, is named in ``errors`` and kept out of the figures.

Rules: no sockets of its own (the clients' readers do the wire); one entry per transport, the
per-user values kept so the report can state medians with their intervals.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any, TypedDict

from clients import StreamError, create_stream, reader_class
from clients.base import GaveUp, Retry

PRESS_S = (0.5, 2.5)  # when a user presses stop, seconds into the answer
END_S = 5.0  # a stream without its stopped end this long after the press: the stop failed


class UserStop(TypedDict):
    stop_to_last_ms: float
    stop_to_end_ms: float | None  # None: no end saying ``stopped`` within END_S
    model_stop_ms: float | None  # None: the end carried no ``stopped``
    answered_ms: float | None  # the press to the stop's own answer (202, StopStream's reply)
    wasted: int  # tokens made (their ``t``) after the press that reached the reader
    resumed_tokens: int | None  # None: the resumed read failed
    error: str | None


def summary(values: list[float]) -> dict[str, Any]:
    """Median, p90 and max over the users, and every value (the report's intervals)."""
    if not values:
        return {"p50": None, "p90": None, "max": None, "values": []}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"p50": round(statistics.median(ordered), 2), "p90": round(p90, 2),
            "max": round(ordered[-1], 2), "values": [round(v, 2) for v in values]}  # fmt: skip


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


async def one_user(transport: str, url: str, press_s: float, tokens: int, rate: float) -> UserStop:
    """One user: read, press stop at ``press_s``, read to the end, resume once after it. The
    stop goes out beside the read (a task of its own), so the end is timed when the reader
    reads it, whether or not the stop's own answer came first."""
    info = await create_stream(transport, url, tokens=tokens, rate=rate)
    got: list[tuple[int, int]] = []  # (received, t) per token, ns
    reader = reader_class(transport)(
        url, info["id"], lambda s, t, x: got.append((time.time_ns(), t))
    )
    reader.cookie = info.get("cookie")
    task = asyncio.ensure_future(reader.run())
    out: UserStop = {"stop_to_last_ms": 0.0, "stop_to_end_ms": None, "model_stop_ms": None,
                     "answered_ms": None, "wasted": 0, "resumed_tokens": None,
                     "error": None}  # fmt: skip
    try:
        await asyncio.sleep(press_s)
        if task.done():
            exc = task.exception()
            out["error"] = _why(exc) if exc else "the answer ended before the press"
            return out
        pressed = time.time_ns()
        stopping = asyncio.ensure_future(reader.stop())
        answered: list[int] = []
        stopping.add_done_callback(lambda _: answered.append(time.time_ns()))
        await asyncio.wait([task], timeout=END_S)
        await asyncio.wait_for(stopping, END_S)  # its error, if any, is this user's
        out["answered_ms"] = (answered[0] - pressed) / 1e6
        if not task.done() or reader.stopped_ns is None or reader.ended_ns is None:
            out["error"] = (f"no end {END_S:g} s after the press" if not task.done()
                            else "the answer ran to its end: the stop had no effect")  # fmt: skip
            return out
        task.result()  # the read's own error, if it failed
        out["stop_to_end_ms"] = (reader.ended_ns - pressed) / 1e6
        out["model_stop_ms"] = (reader.stopped_ns - pressed) / 1e6
        late = [r for r, _ in got if r > pressed]
        out["stop_to_last_ms"] = (late[-1] - pressed) / 1e6 if late else 0.0
        out["wasted"] = sum(1 for _, t in got if t > pressed)
        resumed: list[int] = []
        again = reader_class(transport)(url, info["id"], lambda s, t, x: resumed.append(s),
                                        after=reader.cursor)  # fmt: skip
        again.cookie = reader.cookie
        await asyncio.wait_for(again.run(), END_S)
        out["resumed_tokens"] = len(resumed)
    except (StreamError, GaveUp, Retry, OSError, TimeoutError) as exc:
        out["error"] = _why(exc)
    finally:
        task.cancel()
    return out


async def measure(transport: str, url: str, users: int, tokens: int, rate: float,
                  seed: int = 1) -> list[UserStop]:  # fmt: skip
    """``users`` readers at once, each pressing stop at its own seeded moment."""
    rng = random.Random(seed)
    presses = [rng.uniform(*PRESS_S) for _ in range(users)]
    return list(await asyncio.gather(*(one_user(transport, url, p, tokens, rate)
                                       for p in presses)))  # fmt: skip


def entry(transport: str, users: list[UserStop]) -> dict[str, Any]:
    """One transport's ``stops[]`` entry: figures over the users whose stop took effect."""
    ok = [u for u in users if u["error"] is None and u["stop_to_end_ms"] is not None]
    resumed = [u["resumed_tokens"] for u in ok if u["resumed_tokens"] is not None]
    return {
        "transport": transport, "users": len(users), "stopped": len(ok),
        "stop_to_last_ms": summary([u["stop_to_last_ms"] for u in ok]),
        "stop_to_end_ms": summary([u["stop_to_end_ms"] for u in ok]),  # type: ignore[misc]
        "model_stop_ms": summary([u["model_stop_ms"] for u in ok]),  # type: ignore[misc]
        "answered_ms": summary([u["answered_ms"] for u in ok if u["answered_ms"] is not None]),
        "wasted": {"total": sum(u["wasted"] for u in ok),
                   "max": max((u["wasted"] for u in ok), default=None),
                   "values": [u["wasted"] for u in ok]},
        "resumed_tokens": sum(resumed) if resumed else None,
        "errors": sorted({u["error"] for u in users if u["error"]}),
    }  # fmt: skip


def line(e: dict[str, Any]) -> str:
    """One transport's outcome on one line, for the terminal."""

    def ms(key: str) -> str:
        s = e[key]
        return "n/a" if s["p50"] is None else f"{s['p50']:.1f}/{s['max']:.1f} ms"

    bad = f"; errors: {'; '.join(e['errors'])}" if e["errors"] else ""
    return (f"{e['transport']:>5}: stopped {e['stopped']}/{e['users']}; press to end "
            f"{ms('stop_to_end_ms')} (median/max), to the model stopping {ms('model_stop_ms')}; "
            f"{e['wasted']['total']} tokens made after the press; a resume after the stop got "
            f"{e['resumed_tokens']}{bad}")  # fmt: skip
