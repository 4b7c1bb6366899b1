"""A tab's record and a browser entry (bench/browser/records.py) from synthetic page snapshots:
no browser, no server, no clock but the ones given."""

from __future__ import annotations

from typing import Any

from bench.browser import records
from bench.browser.tabs import Plan
from bench.results.hist import Histogram
from servers.tokens.core import Codec

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000


def snapshot(got: int, tokens: int = 400, rate: float = 40.0, state: str = "reading",
             events: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """A page whose stream was created at T0 and that read seqs 0 .. got-1."""
    sid, stream = Codec().new_stream(tokens, rate, T0)
    return {
        "url": f"http://127.0.0.1:8000/v1/streams/{sid}", "state": state, "time_origin": 0.0,
        "first_token_ms": 100.0 if got else None, "created_ms": 90.0,
        "last_token_ms": 100.0 + got * 25 if got else None, "seqs": list(range(got)),
        "texts": [stream.text(s) for s in range(got)], "latency_ms": [1.0] * got,
        "events": events or [], "protocol": "http/1.1", "error": None,
    }  # fmt: skip


def tab(snap: dict[str, Any] | None, ended_ns: int | None, start: Any = None) -> records.Tab:
    return records.tab_record(0, snap, records.histogram(snap), 400, start, {}, ended_ns)


def test_a_tab_stalled_at_76_of_400_has_the_due_rest_unread() -> None:
    # Five seconds in, seqs 0..200 are due (seq 200 at exactly T0 + 5 s): 125 of them never came.
    t = tab(snapshot(76), T0 + 5 * S)
    assert (t["lost"], t["unread"], t["outcome"]) == (0, 201 - 76, "stalled")
    # Past the stream's last due time every token is owed: unread is capped at its length.
    t = tab(snapshot(76), T0 + 60 * S)
    assert (t["lost"], t["unread"]) == (0, 400 - 76)
    # A gap below the highest seq is lost, not unread.
    snap = snapshot(76)
    del snap["seqs"][10], snap["texts"][10]
    t = tab(snap, T0 + 60 * S)
    assert (t["lost"], t["unread"], t["text_mismatch"]) == (1, 324, 0)


def test_a_finished_tab_owes_nothing_and_reads_all() -> None:
    t = tab(snapshot(400, state="done"), T0 + 60 * S)
    assert (t["lost"], t["unread"], t["outcome"]) == (0, 0, "read all")
    # Its end came: every token was owed, with or without the window's end.
    t = tab(snapshot(390, state="done"), None)
    assert (t["unread"], t["outcome"]) == (10, "stalled")


def test_what_was_not_measured_is_none() -> None:
    # No window end for a tab still reading: its unread is not known, so it did not read all.
    assert tab(snapshot(76), None)["unread"] is None
    # A page that never answered: nothing it alone could tell is 0.
    t = tab(None, T0 + 60 * S)
    assert t["outcome"] == "never loaded" and t["tokens"] is None and t["reconnects"] is None
    assert all(t[k] is None for k in records.UNKNOWN_CHECKS)  # type: ignore[literal-required]
    # A page whose prompt POST never answered has no stream: what it was owed is not known.
    failed = snapshot(0, state="failed") | {"url": None}
    assert tab(failed, T0 + 60 * S)["unread"] is None
    # A renderer metric the baseline lacks gives no delta (not the whole counter).
    t = records.tab_record(0, snapshot(10), Histogram(), 400, ({}, 0), {"TaskDuration": 3.0})
    assert t["renderer_task_s"] is None and t["renderer_tokens"] == 10


def test_the_entry_sums_unread_and_keeps_an_unknown_tab_unknown() -> None:
    plan = Plan("sse", "eventsource", 2, 400, 40.0)
    stalled, done = tab(snapshot(76), T0 + 60 * S), tab(snapshot(400, state="done"), T0 + 60 * S)
    e = records.entry(plan, [stalled, done], Histogram(), 30.0, None, 0)
    assert (e["lost"], e["unread"], e["tabs_read_all"], e["tokens_received"]) == (0, 324, 1, 476)
    e = records.entry(plan, [done, tab(None, T0 + 60 * S)], Histogram(), 30.0, 1.0, 0)
    assert e["unread"] is e["lost"] is e["tokens_received"] is e["reconnects"] is None
    assert e["server_cpu_us_per_token"] is None and e["tabs_read_all"] == 1


def test_script_cost_counts_only_tabs_that_measured_it() -> None:
    plan = Plan("sse", "eventsource", 2, 400, 40.0)
    a = records.tab_record(0, snapshot(100), Histogram(), 400, ({"TaskDuration": 0.0,
                           "ScriptDuration": 0.0}, 0), {"TaskDuration": 0.1,
                           "ScriptDuration": 0.05})  # fmt: skip
    b = records.tab_record(1, snapshot(100), Histogram(), 400, ({"TaskDuration": 0.0}, 0),
                           {"TaskDuration": 0.1})  # fmt: skip
    e = records.entry(plan, [a, b], Histogram(), 30.0, None, 0)
    assert e["renderer_us_per_token"] == 1000.0 and e["renderer_script_us_per_token"] == 500.0
