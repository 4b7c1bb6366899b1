"""Tables for people: the bench summary and the fault table, on a terminal or in Markdown."""

from __future__ import annotations

from typing import Any

from bench.results.queries import variant_of
from bench.results.schema import FAULT_SCENARIOS as SCENARIOS

SIDES = {"server": "the server", "loadgen": "the load generator"}
CATCH_UP = 1.01  # goodput above this: a stall caught up in the window, not the window's edge
GOODPUT = (
    "Goodput is the tokens delivered in the window over the tokens that fell due in it, so above "
    "1 the window delivered tokens that fell due before it opened: within 1 % that is streams "
    "running slightly behind as the window opened; above 1.01, marked *catch-up*, streams that "
    "stalled caught up in this window: those tokens were late, not extra (the lateness is in the "
    "p99 column, and the window before read low). It is not capped: a cap would hide the stall."
)


def short_of_users(st: dict[str, Any]) -> tuple[int, int] | None:
    """(users connected, users asked for) when fewer connected than the step asked for (its
    ramp's ``users_connected``), else None (all connected, or the ramp did not record it)."""
    got = (st.get("ramp") or {}).get("users_connected")
    return None if got is None or got >= st["clients"] else (got, st["clients"])


def held(st: dict[str, Any]) -> bool:
    """The step held the SLO with every user it asked for connected."""
    return bool(st["slo"]["held"]) and short_of_users(st) is None


def ramp_limit(st: dict[str, Any]) -> str:
    """A measured limit in words: "31,993 of 50,000 connected in 60 s: accepts 952/s at best;
    which side limited it: not recorded"."""
    got, asked = short_of_users(st) or (st["clients"], st["clients"])
    ramp = st.get("ramp") or {}
    secs = ramp.get("planned_s") if ramp.get("limited") else None
    secs = secs or ramp.get("took_s")
    out = f"{got:,} of {asked:,} connected" + (f" in {secs:,.0f} s" if secs else "")
    if ramp.get("accept_per_s"):
        out += f": accepts {ramp['accept_per_s']:,.0f}/s at best"
    side = ramp.get("limited_by")
    if side:
        return out + f"; limited by {SIDES.get(side, side)}"
    if st.get("limited_by"):
        return out + f"; {SIDES.get(st['limited_by'], st['limited_by'])} was saturated"
    return out + "; which side limited it: not recorded"


def outcome(st: dict[str, Any]) -> str:
    """held or broke, and what it did not check: fewer users connected than asked (a measured
    limit, not held), a window without a time-to-first-token sample (the TTFT part not
    measured), a server that used more CPU than its cores (pinning leaked)."""
    if short_of_users(st):
        slo = "held" if st["slo"]["held"] else "broke"
        rule = ("; the knee search counts 99 % connected as all"
                if (st.get("ramp") or {}).get("limited") is False else "")  # fmt: skip
        return f"**not held**: {ramp_limit(st)} (the SLO {slo} for those connected{rule})"
    out = "held" if st["slo"]["held"] else "broke"
    if st["slo"]["held"] and not st["ttft_ms"].get("count"):
        out += " (no TTFT sample)"
    if st["server"].get("cpu_over_cores"):
        out += " **(server over its cores)**"
    return out


def goodput_cell(st: dict[str, Any]) -> str:
    g = st["goodput"]
    return "-" if g is None else f"{g} (*catch-up*)" if g > CATCH_UP else str(g)


def _kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def _ms_1k(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.1f}"


def steps_md(steps: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> list[str]:
    """Every step per transport, in ``steps``' order: the appendix. Each step carries its rate
    per user as ``_rate`` (bench.report.charts.steps_of)."""
    out = [
        "| transport | users | tok/s per user | tok/s | p50 ms | p99 ms | goodput | lost | unread "
        "| server ms / 1k tok | KiB / conn | loadgen µs / tok | SLO | bottleneck |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for t, every in steps.items():
        for st in every:
            srv = st["server"]
            rate = "-" if st.get("_rate") is None else f"{st['_rate']:g}"
            cells = [
                names.get(t, t), f"{st['clients']:,}", rate, f"{st['tokens_per_s']:,.0f}",
                f"{st['latency_ms']['p50']:,.1f}", f"{st['latency_ms']['p99']:,.1f}",
                goodput_cell(st), str(st["lost"]),
                "-" if st.get("unread") is None else str(st["unread"]),
                _ms_1k(srv["cpu_s_per_1k_tokens"]), _kib(srv["mem_per_conn_bytes"]),
                str(st["loadgen"]["cpu_us_per_token"] or "-"), outcome(st),
                st["limited_by"] or "-",
            ]  # fmt: skip
            out.append("| " + " | ".join(cells) + " |")
    return out


def holds_md(docs: list[dict[str, Any]], users: int, names: dict[str, str]) -> list[str]:
    """Every step of ``users`` users or more, of every server variant: the users it connected,
    the accept rate, what the users saw; fewer connected than asked reads as a limit."""
    rows = []
    for doc in docs:
        cfg = doc.get("config") or {}
        for run in doc.get("runs", []):
            t = run["transport"]
            label = variant_of(run).label
            rate = (cfg.get("rates") or {}).get(t) or cfg.get("rate")
            for st in run["steps"]:
                if st["clients"] < users:
                    continue
                ramp = st.get("ramp") or {}
                got = ramp.get("users_connected")
                acc = ramp.get("accept_per_s")
                rows.append("| " + " | ".join([
                    names.get(t, t) + (f" ({label})" if label else ""), f"`{doc['run_id']}`",
                    "-" if rate is None else f"{rate:g}",
                    "not recorded" if got is None else f"{got:,} of {st['clients']:,}",
                    "-" if acc is None else f"{acc:,.0f}",
                    f"{st['latency_ms']['p99']:,.1f}", goodput_cell(st),
                    _ms_1k(st["server"]["cpu_s_per_1k_tokens"]),
                    _kib(st["server"]["mem_per_conn_bytes"]), outcome(st),
                ]) + " |")  # fmt: skip
    if not rows:
        return []
    return [
        "", f"## {users:,} users", "",
        f"Each step asked for {users:,} users at a low rate per user (the server's load, not "
        "its knee). A step where fewer users connected than it asked for is a measured limit "
        "(how many connected within the ramp's budget, and the best accept rate over 3 s), not a "
        "step that held. Its cost per connection and token are at the users it held.",
        "", "| transport | run | tok/s per user | connected | accepted per s | p99 ms | goodput "
        "| server ms / 1k tok | KiB / conn | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows,
    ]  # fmt: skip


def merge_faults(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fault entries of several runs, in scenario order; a later run's entry replaces an
    earlier one for the same scenario, transport, mode and deployment (behind the LB)."""
    from bench.report.behind_lb import deployment

    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for doc in docs:
        for e in doc.get("faults", []):
            merged[(e["scenario"], e["transport"], e["mode"], deployment(e))] = {
                **e, "_run": doc.get("run_id")}  # fmt: skip
    order = {name: i for i, name in enumerate(SCENARIOS)}
    return sorted(merged.values(), key=lambda e: (order.get(e["scenario"], 99), e["transport"]))


def faults_markdown(entries: list[dict[str, Any]]) -> str:
    """Scenario by transport and mode: detection, reconnect and catch-up (p50/max ms), tokens."""

    def ms(d: dict[str, Any]) -> str:
        return "never" if d["p50"] is None else f"{d['p50']:,.0f} / {d['max']:,.0f}"

    rows = [
        "| scenario | transport | mode | detection | reconnect | catch-up | lost | unread | dup | "
        "unrecovered | user saw | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        rows.append(
            f"| {e['scenario']} | {e['transport']} | {e['mode']} | {ms(e['detection_ms'])} | "
            f"{ms(e['reconnect_ms'])} | {ms(e['catchup_ms'])} | {e['lost']} | "
            f"{'-' if e.get('unread') is None else e['unread']} | {e['duplicated']} | "
            f"{e['unrecovered']}/{e['clients']} | {e['user_saw']} | "
            f"{'yes' if e['passed'] else '**no**'} |"
        )
    return "\n".join(rows)


def print_summary(doc: dict[str, Any]) -> None:
    """One line per transport and step: what users saw and what it cost."""
    head = (f"{'transport':<9} {'clients':>7} {'tok/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'goodput':>8} {'lost':>5} {'dup':>4} {'srv ms/1k':>9} {'KiB/conn':>8} "
            f"{'gen us/tok':>10} {'limit':>7}")  # fmt: skip
    print(head)
    for run in doc["runs"]:
        if label := variant_of(run).label:
            print(f"{run['transport']} ({label}):")
        if run.get("works") is False:
            print(f"{run['transport']:<9} no stream got through, not measured: {run['why']}")
        for st in run["steps"]:
            srv, gen = st["server"], st["loadgen"]
            per_k = srv["cpu_s_per_1k_tokens"]
            mem = srv["mem_per_conn_bytes"]
            print(
                f"{run['transport']:<9} {st['clients']:>7} {st['tokens_per_s']:>9,.0f} "
                f"{st['latency_ms']['p50']:>8.1f} {st['latency_ms']['p99']:>8.1f} "
                f"{st['goodput'] if st['goodput'] is not None else float('nan'):>8.3f} "
                f"{st['lost']:>5} {st['duplicated']:>4} "
                f"{per_k * 1000 if per_k is not None else float('nan'):>9.1f} "
                f"{mem / 1024 if mem else float('nan'):>8.1f} "
                f"{gen['cpu_us_per_token'] or float('nan'):>10.1f} {st['limited_by'] or '-':>7}"
            )
        if run.get("knee"):
            k = run["knee"]
            print(
                f"  knee {run['transport']}: {k['clients']} clients held "
                f"({k['clients_per_server_core']} per server core), broke at {k['broke_at']}"
            )


def _ms(d: dict[str, Any]) -> str:
    return "-" if d["p50"] is None else f"{d['p50']:,.0f}/{d['max']:,.0f}"


def fault_line(e: dict[str, Any]) -> str:
    verdict = "pass" if e["passed"] else "FAIL"
    return (
        f"{e['scenario']:<15} {e['transport']:<4} {e['mode']:<8} "
        f"detect {_ms(e['detection_ms']):>13} reconnect {_ms(e['reconnect_ms']):>11} "
        f"catch-up {_ms(e['catchup_ms']):>11} lost {e['lost']:>4} dup {e['duplicated']:>3} "
        f"unrecovered {e['unrecovered']}/{e['clients']} "
        f"p99 {e['latency_ms']['p99'] if 'latency_ms' in e else float('nan'):,.0f} ms "
        f"{verdict}: {e['user_saw']}"
    )


def print_fault_table(entries: list[dict[str, Any]]) -> None:
    print("times in ms as p50/max over the clients; '-': never happened in the window")
    for e in entries:
        print(fault_line(e))
