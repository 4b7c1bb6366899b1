"""tokenbench floor: both yardsticks run and count what they claim (no timing asserted)."""

from __future__ import annotations

import pytest

from bench.load import floor


def test_parse_path_checks_every_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert floor.parse_path(tokens=300) > 0
    # A parse path that corrupts texts must be caught, not timed.
    import clients.sse_parser

    real = clients.sse_parser.SSEParser._dispatch

    def corrupt(self: clients.sse_parser.SSEParser) -> None:
        self._data = [d.replace('"text":"', '"text":"X') for d in self._data]
        real(self)

    monkeypatch.setattr(clients.sse_parser.SSEParser, "_dispatch", corrupt)
    with pytest.raises(RuntimeError, match="wrong text"):
        floor.parse_path(tokens=300)


@pytest.mark.timeout(60)
def test_event_loop_floor_receives_messages() -> None:
    result = floor.event_loop_floor("uvloop", connections=5, rate=40.0, seconds=3.0)
    n, window = result["messages"], result["window_s"]
    assert window >= 0.99  # asleep for 1 s (the loop may wake a hair early)
    # 40 msg/s on 5 sockets over the window; a slow machine may coalesce a few reads, never
    # invent any: at most what was sent, and at least half of it.
    assert 5 * 40 * window * 0.5 <= n <= 5 * 40 * (window + 1)
    # The figures are CPU per message: they add up to the CPU measured, which one thread
    # cannot make exceed the window (plus one clock tick of os.times).
    per_msg = (result["user_us"] + result["system_us"]) * n / 1e6
    assert per_msg == pytest.approx(result["cpu_s"], abs=1e-9)
    assert 0 <= result["cpu_s"] <= window + 0.02
