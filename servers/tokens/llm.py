"""The simulated LLM's timing: when each token of an answer is emitted. Sans-I/O.

Rules of this module:
- No sockets, no asyncio, no clock. ``LlmShape.gaps(stream)`` gives the seconds before each
  token (``seq`` 0 first: its gap is the time to first token); the producer sleeps them.
- Reproducible: an answer's gaps follow from its stream's seed, so two runs of one id wait alike.
- The text of token ``seq`` is the stream's (``Stream.text``), so readers check it as before;
  only its timing differs from ``--source derive``, and ``t`` is when the producer emitted it
  (docs/protocol.md, "Sources").
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from servers.tokens.core import Stream


@dataclass(frozen=True)
class LlmShape:
    """A model's timing: time to first token (uniform), per-token jitter, tool-call pauses."""

    ttft_min_s: float = 0.2
    ttft_max_s: float = 2.0
    jitter: float = 0.3  # each gap is 1/rate times 1 +- jitter (uniform)
    pause_every: int = 0  # a pause before every Nth token (0: none)
    pause_s: float = 0.0  # how long each pause lasts (a tool call, say 70 s)

    def __post_init__(self) -> None:
        if not 0 <= self.ttft_min_s <= self.ttft_max_s <= 600:
            raise ValueError("time to first token: 0 <= min <= max <= 600 s")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be 0 <= j < 1, not {self.jitter:g}")
        if self.pause_every < 0 or not 0 <= self.pause_s <= 3600:
            raise ValueError("pause-every must be >= 0 and pause-s 0..3600")

    def gaps(self, stream: Stream) -> Iterator[float]:
        """Seconds to wait before emitting each token, ``seq`` 0 to ``tokens - 1``."""
        rng = random.Random(stream.seed)
        yield rng.uniform(self.ttft_min_s, self.ttft_max_s)
        base = 1.0 / stream.rate
        for seq in range(1, stream.tokens):
            gap = base * (1.0 + rng.uniform(-self.jitter, self.jitter))
            if self.pause_every and seq % self.pause_every == 0:
                gap += self.pause_s
            yield gap

    def longest_s(self, stream: Stream) -> float:
        """An upper bound on how long an answer takes, for timeouts."""
        pauses = (stream.tokens - 1) // self.pause_every if self.pause_every else 0
        return (
            self.ttft_max_s
            + (stream.tokens - 1) * (1 + self.jitter) / stream.rate
            + pauses * self.pause_s
        )
