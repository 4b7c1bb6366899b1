"""servers/grpc/h2settings.py: h2's SETTINGS books kept in lists behave as h2's own."""

from __future__ import annotations

import sys

import h2.config
import h2.connection
import h2.settings
from hypothesis import given
from hypothesis import strategies as st

from servers.grpc.h2settings import CompactSettings, compact

KEYS = [h2.settings.SettingCodes.HEADER_TABLE_SIZE, h2.settings.SettingCodes.INITIAL_WINDOW_SIZE,
        h2.settings.SettingCodes.MAX_FRAME_SIZE, h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE, 0x99]  # fmt: skip
OPS = st.lists(st.one_of(st.tuples(st.just("set"), st.sampled_from(KEYS),
                                   st.integers(16_384, 65_535)),
                         st.just(("ack",))), max_size=30)  # fmt: skip


def _state(s: h2.settings.Settings) -> dict[int, int | None]:
    """Every setting's current value; None for one not yet acknowledged (h2: KeyError)."""
    out: dict[int, int | None] = {}
    for k in s:
        try:
            out[int(k)] = s[k]
        except KeyError:
            out[int(k)] = None
    return out


def _changed(s: h2.settings.Settings) -> list[tuple[int, int | None, int]]:
    return sorted((int(k), c.original_value, c.new_value) for k, c in s.acknowledge().items())


@given(OPS)
def test_compact_settings_answer_as_h2s_own(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    ours = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    compact(ours)
    assert type(ours.local_settings) is CompactSettings
    for theirs_s, ours_s in ((conn.local_settings, ours.local_settings),
                             (conn.remote_settings, ours.remote_settings)):  # fmt: skip
        for op in ops:
            if op[0] == "set":
                theirs_s[op[1]] = op[2]
                ours_s[op[1]] = op[2]
            else:
                assert _changed(theirs_s) == _changed(ours_s)
            assert _state(theirs_s) == _state(ours_s)


def test_compact_settings_are_smaller() -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    before = sum(sys.getsizeof(v) for v in conn.local_settings._settings.values())
    compact(conn)
    after = sum(sys.getsizeof(v) for v in conn.local_settings._settings.values())
    assert after * 4 < before
