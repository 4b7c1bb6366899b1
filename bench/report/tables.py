"""Tables for people: the bench summary and the fault table, on a terminal or in Markdown."""

from __future__ import annotations

from typing import Any

from bench.results.queries import variant_of
from bench.results.schema import FAULT_SCENARIOS as SCENARIOS


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
