"""An LLM answer as a backend relays it (``--source llm``): the tokens that have arrived so far.

Rules of this module:
- Backends do not invent tokens: an ``Answer`` holds what the producer emitted (through this
  pod's own connection, or read from the shared log), from seq ``base`` on, and nothing else.
- It frames like ``core.Stream`` (``payload``, ``due_ns``, ``text``, ``end_fields``), with ``t``
  the producer's emission time, so every transport's framing serves it unchanged.
- No sockets, no clock. Waiting readers hand in a future (``watch``) that ``add`` completes;
  the futures come from the hub, so a draining server wakes them like any other wait.
- A gap is never papered over: a token that arrives past a missing one (the log lost it, say
  Redis restarted empty) marks the answer ``broken``; its readers then end their connection as
  a draining server would, and the resume is refused (410) by whoever cannot serve it.
"""

from __future__ import annotations

import asyncio
import json

from servers.pacing.hub import Draining
from servers.tokens.core import Stream


class Answer:
    """Tokens ``base .. available - 1`` of one answer of ``tokens`` tokens."""

    __slots__ = ("_t", "_x", "base", "broken", "key", "stopped_ns", "stream", "tokens", "waiters")

    def __init__(self, stream: Stream, key: str, base: int = 0) -> None:
        self.stream = stream
        self.key = key  # the answer's name in its log (its stream id, or a Redis key)
        self.tokens = stream.tokens
        self.base = base
        self._t: list[int] = []  # emission times, ns
        self._x: list[str] = []  # texts as JSON strings, as the producer wrote them
        self.waiters: list[asyncio.Future[None]] = []
        self.broken = False  # a later token arrived past a missing one: the log lost some
        self.stopped_ns = 0  # the producer stopped the answer then (the user pressed stop)

    @property
    def available(self) -> int:
        """One past the last seq held."""
        return self.base + len(self._t)

    @property
    def complete(self) -> bool:
        return self.available >= self.tokens

    def add(self, seq: int, t_ns: int, text_json: str) -> bool:
        """Append token ``seq`` if it is the next one; duplicates and gaps are refused."""
        if seq != self.available or seq >= self.tokens:
            if self.available < seq < self.tokens:
                self.broken = True
            return False
        self._t.append(t_ns)
        self._x.append(text_json)
        return True

    def stop(self, final: int, stopped_ns: int) -> None:
        """The producer stopped this answer after ``final`` tokens, at ``stopped_ns``."""
        if self.stopped_ns or final >= self.tokens:
            return
        self.tokens = max(final, self.available)
        self.stopped_ns = stopped_ns
        if self.available < self.tokens:
            self.broken = True  # the end names tokens this log never got
        self.wake()

    def wake(self) -> None:
        """Tell every waiting reader that tokens arrived."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def watch(self, fut: asyncio.Future[None]) -> None:
        self.waiters.append(fut)

    # framing, as core.Stream
    def due_ns(self, seq: int) -> int:
        return self._t[seq - self.base]

    def text(self, seq: int) -> str:
        return json.loads(self._x[seq - self.base])

    def payload(self, seq: int) -> str:
        i = seq - self.base
        return f'{{"seq":{seq},"t":{self._t[i]},"text":{self._x[i]}}}'

    def end_fields(self) -> str:
        if self.stopped_ns:
            return f'"tokens":{self.tokens},"stopped":{self.stopped_ns}'
        return self.stream.end_fields()

    def end_payload(self) -> str:
        return f"{{{self.end_fields()}}}"

    def cursor(self, after: int) -> LogCursor:
        return LogCursor(self, after)


class LogCursor:
    """``core.Cursor`` for an answer: what has arrived is due now, the rest has no due time."""

    __slots__ = ("answer", "next_seq")

    def __init__(self, answer: Answer, after: int) -> None:
        if after + 1 < answer.base:
            raise ValueError(f"answer held from seq {answer.base}, asked from {after + 1}")
        self.answer = answer
        self.next_seq = after + 1

    @property
    def done(self) -> bool:
        return self.next_seq >= self.answer.tokens

    def take(self, now_ns: int, limit: int) -> range:
        if self.answer.broken and self.next_seq >= self.answer.available:
            raise Draining()  # end this connection: the resume gets the log's answer (410)
        out = range(self.next_seq, min(self.answer.available, self.next_seq + limit))
        self.next_seq = max(out.stop, self.next_seq)
        return out

    def next_due_ns(self) -> int | None:
        """None: the next token has not been produced yet; ``watch`` says when it is."""
        return None

    def watch(self, fut: asyncio.Future[None]) -> None:
        self.answer.watch(fut)
