"""What to ship: the meeting's question answered in one paragraph, by a rule, from the runs.

The rule:
1. A candidate is a transport with a measured knee whose hardened client lost nothing and
   recovered every stream in every fault scenario run. A transport without fault runs is a
   candidate only with that caveat; one that lost tokens even hardened is out.
2. The cheapest candidate is the one needing the fewest server cores for 50,000 users at
   40 tok/s (bench.report.figures.fleet). Candidates whose core intervals overlap the cheapest
   tie with it, and are named with it.
3. What to build around it is what its out-of-the-box client failed in the fault runs: a
   watchdog (silence was never noticed), retrying after a 5xx (a 503 ended the stream), and
   resume from the last seq (every transport needs it to lose nothing).
   A candidate whose knee never broke (its capacity is above what was tried) leaves the cost
   comparison open when it could be the cheapest: then the paragraph says so and names none.
4. The caveats are what the runs could not show: a knee bound by the load generator, an
   unstable figure, scenarios never run, and what no run here measures (a load balancer with
   several backends, real browsers).
It never claims more than the runs measured, and it changes when the numbers do.
"""

from __future__ import annotations

from typing import Any

import transports
from bench.report.figures import NAMES, fleet, knees


def _faults_of(faults: list[dict[str, Any]], t: str, mode: str) -> list[dict[str, Any]]:
    return [e for e in faults if e["transport"] == t and e["mode"] == mode]


def recommend(
    docs: list[dict[str, Any]], faults: list[dict[str, Any]],
    lb_faults: list[dict[str, Any]] | None = None, browser: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What to ship. ``faults`` are runs on one server; ``lb_faults`` behind the load balancer
    (bench.report.behind_lb) add what the deployment needs and lift that caveat; ``browser``
    (bench.report.browsers) adds what the browsers needed and lifts theirs."""
    rows = {r["transport"]: r for r in fleet(docs)}
    k = knees(docs)
    if not rows:
        return {"text": "Not enough measured to say: no knee run.", "pick": None}
    out_lost, caveats = [], []
    candidates = []
    for t in rows:
        hardened = _faults_of(faults, t, "hardened")
        if any(e["lost"] or e["unrecovered"] or e["duplicated"] for e in hardened):
            out_lost.append(NAMES[t])
            continue
        candidates.append(t)
    if not candidates:
        return {"text": "No transport kept every token even with a hardened client: ship none "
                "of them as measured.", "pick": None}  # fmt: skip
    by_cost = sorted(candidates, key=lambda t: rows[t]["cores"]["mean"])
    best = by_cost[0]
    open_ended = [t for t in candidates if k[t].broke_at is None]
    if open_ended and (best in open_ended or rows[best]["cores"]["hi"] >= min(
            rows[t]["cores"]["lo"] for t in open_ended)):  # fmt: skip
        names = ", ".join(NAMES[t] for t in open_ended)
        return {"text": f"**Not enough measured to name one.** No step broke the SLO for "
                f"{names}: their capacity is above what was tried, so the cost comparison is "
                f"open. A knee search settles it (`make bench`).", "pick": None,
                "group": [], "build": {}}  # fmt: skip
    ties = [t for t in by_cost[1:] if rows[t]["cores"]["lo"] <= rows[best]["cores"]["hi"]]
    order = list(NAMES)  # a tie is named in the registry's order, so the headline cannot flip
    group = sorted([best, *ties], key=order.index)

    def cost(t: str) -> str:
        c = rows[t]["cores"]
        return (f"{NAMES[t]} needs {c['mean']:g} server cores (interval {c['lo']:g} to "
                f"{c['hi']:g}) and {rows[t]['memory_gib'] or '?'} GiB")  # fmt: skip

    builds = {t: _build(t, faults) + _deployment(t, lb_faults or []) + _browser(t, browser or [])
              for t in group}  # fmt: skip
    text = [f"**Ship {' or '.join(NAMES[t] for t in group)}.** "]
    if ties:
        text.append("They tie on cost for 50,000 users at 40 tok/s (the core intervals "
                    f"overlap): {'; '.join(cost(t) for t in group)}. Choose between them on the "
                    "client side. ")  # fmt: skip
    else:
        text.append(f"{cost(best)} for 50,000 users at 40 tok/s. ")
    text.append(" ".join(f"Build around {NAMES[t]}: {'; '.join(builds[t])}." for t in group))
    if out_lost:
        text.append(f" Out: {', '.join(out_lost)} lost tokens even with a hardened client.")
    if not faults:
        caveats.append("no fault scenarios were run")
    if any(k[t].harness_bound for t in group):
        caveats.append("a knee bounded by the load generator is a lower bound")
    unstable = [NAMES[t] for t in group if rows[t]["knee_unstable"]]
    if unstable:
        caveats.append(f"the knee of {' and '.join(unstable)} is unstable (its edges split "
                       f"between runs): capacity is known to one bracket step")  # fmt: skip
    unmeasured = [] if browser else ["real browsers"]
    if not lb_faults:
        unmeasured.insert(0, "a load balancer with several backends and a shared replay log")
    if not _several_load_machines(docs):
        unmeasured.append("several load machines")
    if unmeasured:
        caveats.append("not measured here: " + ", ".join(unmeasured))
    text.append(" Caveats: " + "; ".join(caveats) + ".")
    return {"text": "".join(text), "pick": group[0], "group": group, "build": builds}


def _several_load_machines(docs: list[dict[str, Any]]) -> bool:
    """Some run's load processes ran on more than one machine (``--cluster``)."""
    return any(
        len({n.get("ip") for n in run.get("load_nodes", [])} - {None}) > 1
        for d in docs for run in d.get("runs", [])
    )  # fmt: skip


def _deployment(t: str, lb_faults: list[dict[str, Any]]) -> list[str]:
    """What behind the load balancer ``t`` needed: a log every backend reads, where answers held
    in the pod lost tokens (hardened clients) and the shared log lost none."""
    from bench.report.behind_lb import deployment

    mine = [e for e in lb_faults if e["transport"] == t and e["mode"] == "hardened"]
    pod = [e for e in mine if deployment(e).startswith("pod")]
    shared = [e for e in mine if deployment(e).startswith("redis")]
    if any(not e["passed"] for e in pod) and shared and all(e["passed"] for e in shared):
        return ["a replay log every backend reads (Redis Streams here), not the pod's memory: "
                "behind the load balancer that lost tokens when a backend died or a read "
                "landed on another one"]  # fmt: skip
    return []


def _browser(t: str, entries: list[dict[str, Any]]) -> list[str]:
    """What ``t``'s browser clients needed: HTTP/2 to the browser where a tab beyond the sixth
    waited over HTTP/1.1 and none did over HTTP/2."""
    from bench.report.browsers import waited

    wide = [e for e in entries if e["transport"] == t and e["fault"] == "none" and e["tabs"] > 6]
    h1 = [e for e in wide if e["network"] == "1.1" and waited(e)]
    h2 = [e for e in wide if e["network"] == "2"]
    if h1 and h2 and not any(waited(e) for e in h2):
        return [
            "HTTP/2 from the browser to the load balancer (an ALB's HTTPS listener): over "
            "HTTP/1.1 a tab beyond the sixth on one origin waited for a connection"
        ]
    return []


def _build(t: str, faults: list[dict[str, Any]]) -> list[str]:
    """What ``t``'s client as it comes failed in the fault runs, and the resume it needs."""
    build = []
    default = _faults_of(faults, t, "default")
    if any(e["scenario"] == "blackhole" and e["unrecovered"] for e in default):
        build.append(f"a watchdog that reconnects after two heartbeats of silence (listening "
                     f"for {transports.get(t).watchdog})")  # fmt: skip
    if any("503" in (e.get("user_saw") or "") and e["unrecovered"] for e in default):
        build.append("a client that retries after a 5xx from the load balancer")
    build.append(f"resume from the last seq seen ({transports.get(t).resume})")
    return build
