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
    assert result["messages"] >= 5 * 40 * 0.5  # about a second of 40 msg/s on 5 sockets
    assert result["user_us"] >= 0 and result["system_us"] >= 0
