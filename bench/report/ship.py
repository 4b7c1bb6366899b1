"""What to ship: the meeting's question answered in one paragraph, by a rule, from the runs.

The rule:
0. Only a complete run answers: a knee, memory per connection and hardened fault runs for every
   transport of the registry. Anything less says "not enough measured" and names what is missing.
1. A candidate is a transport whose hardened client lost nothing, left nothing unread, repeated
   nothing and recovered every stream in every fault scenario run; one that did not is out.
2. The cheapest candidates are those no other candidate beats on users per core, compared as
   half-open knee brackets by ``stats.compare`` (the comparison of every verdict and of
   ``tokenbench compare``), or, where those overlap and both knees broke (not bounded by the
   load generator), on server CPU per token at the most users both held
   (``figures.cpu_at_common_load``, as the one-way verdict compares): a knee whose steps held
   and broke by chance over its whole range has an interval open above that overlaps every
   other, and says nothing about order that the per-token cost does not settle. Two that the
   evidence allows in either order tie and are named together, in the registry's order. A knee
   bounded by the load generator, or that never broke, is "at least" its count: it stays in the
   running, with that caveat.
3. What to build around each is what its client as it comes failed in the fault runs (a watchdog
   where silence was never noticed, a retry where a 5xx ended the stream), what behind the load
   balancer lost tokens (bench.report.behind_lb), what the browsers needed (bench.report.browsers),
   each naming the run that measured it.
4. The caveats are what the runs could not show: every fault scenario not run, an unsettled or
   unstable knee, a drifting machine, and what no run here measured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import transports
from bench.report import stats
from bench.report.figures import NAMES, Knee, cpu_at_common_load, fleet, knees, memory
from bench.results.schema import FAULT_SCENARIOS as SCENARIOS


def _faults_of(faults: list[dict[str, Any]], t: str, mode: str) -> list[dict[str, Any]]:
    return [e for e in faults if e["transport"] == t and e["mode"] == mode]


def _kept_all(e: dict[str, Any]) -> bool:
    return not (e["lost"] or e.get("unread") or e["unrecovered"] or e["duplicated"])


def missing(docs: list[dict[str, Any]], faults: list[dict[str, Any]]) -> list[str]:
    """What a complete run has that these runs lack, one phrase per figure."""
    k = knees(docs)
    mem = set(memory(docs))
    hard = {e["transport"] for e in faults if e["mode"] == "hardened"}
    out = []
    for what, have in (("a knee", set(k)), ("memory per connection", mem),
                       ("hardened fault runs", hard)):  # fmt: skip
        lack = [NAMES[t] for t in NAMES if t not in have]
        if lack:
            out.append(f"{what} for {', '.join(lack)}")
    return out


def beats(k: dict[str, Knee], a: str, b: str) -> str | None:
    """How ``b`` beats ``a`` (rule 2): "users per core", "server CPU per token at N users", or
    None when it does not."""
    on_users = stats.compare(k[a].users_per_core, k[b].users_per_core)
    if on_users != "tie":
        return "users per core" if on_users == "b" else None
    if not all(n.broke_at is not None and not n.harness_bound for n in (k[a], k[b])):
        return None  # an "at least" knee: how far past its count it goes was not measured
    common = cpu_at_common_load(k[a], k[b])
    if common is None:
        return None
    at, cpu_a, cpu_b = common
    if stats.compare(cpu_a, cpu_b, lower_is_better=True) == "b":
        return f"server CPU per token at {at:,} users"
    return None


def cheapest(k: dict[str, Knee], candidates: list[str]) -> list[str]:
    """The candidates no other candidate beats (rule 2), in the registry's order. Orders by CPU
    at different loads can run in a circle and beat everyone; then users per core alone decide
    (intervals that do not overlap cannot)."""
    beaten = {a for a in candidates for b in candidates if a != b and beats(k, a, b)}
    group = [t for t in NAMES if t in candidates and t not in beaten]
    if group:
        return group
    beaten = {a for a in candidates for b in candidates
              if stats.compare(k[a].users_per_core, k[b].users_per_core) == "b"}  # fmt: skip
    return [t for t in NAMES if t in candidates and t not in beaten]


def recommend(
    docs: list[dict[str, Any]], faults: list[dict[str, Any]],
    lb_faults: list[dict[str, Any]] | None = None, browser: list[dict[str, Any]] | None = None,
    through: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What to ship. ``faults`` are runs on one server; ``lb_faults`` behind the load balancer
    (bench.report.behind_lb) add what the deployment needs and lift that caveat; ``browser``
    (bench.report.browsers) adds what the browsers needed and lifts theirs; bench runs
    ``through`` a proxy (bench.report.proxies) add the proxy settings each transport needed."""
    lack = missing(docs, faults)
    if lack:
        return {"text": f"**Not enough measured to say what to ship.** Missing: {'; '.join(lack)}"
                ". `make bench` measures all of it.", "pick": None, "group": [], "build": {},
                "missing": lack}  # fmt: skip
    rows = {r["transport"]: r for r in fleet(docs)}
    k = knees(docs)
    out_lost = [t for t in NAMES if not all(map(_kept_all, _faults_of(faults, t, "hardened")))]
    candidates = [t for t in NAMES if t not in out_lost]
    if not candidates:
        return {"text": "**Ship none of them as measured.** No transport kept every token even "
                "with a hardened client.", "pick": None, "group": [], "build": {},
                "missing": []}  # fmt: skip
    group = cheapest(k, candidates)
    builds = {t: _build(t, faults) + _deployment(t, lb_faults or []) + _browser(t, browser or [])
              + _proxy(t, through or []) for t in group}  # fmt: skip
    text = [f"**Ship {' or '.join(NAMES[t] for t in group)}.** "]
    if len(group) > 1:
        text.append(f"They tie on cost for 50,000 users at 40 tok/s (the evidence allows either "
                    f"order): {'; '.join(_cost(rows[t]) for t in group)}. Choose between them "
                    f"on the client side. ")  # fmt: skip
    else:
        text.append(f"{_cost(rows[group[0]])} for 50,000 users at 40 tok/s. ")
    behind = [t for t in candidates if t not in group]
    if behind:
        # each is beaten by some candidate (rule 2): say on what, and by whom if not the group
        def why_behind(t: str) -> str:
            for b in [*group, *candidates]:
                if b != t and (w := beats(k, t, b)):
                    return w if b in group else f"{w}, against {NAMES[b]}"
            return "users per core"  # the circle's fallback (``cheapest``)

        why = {t: why_behind(t) for t in behind}
        text.append("Behind it: " + ", ".join(f"{NAMES[t]} ({why[t]})" for t in behind) + ". ")
    text.append(" ".join(f"Build around {NAMES[t]}: {'; '.join(builds[t])}." for t in group
                         if builds[t]))  # fmt: skip
    if out_lost:
        text.append(f" Out: {', '.join(NAMES[t] for t in out_lost)} lost tokens or streams even "
                    f"with a hardened client.")  # fmt: skip
    text.append(
        " Caveats: " + "; ".join(_caveats(docs, faults, lb_faults, browser, group, k)) + "."
    )
    return {"text": "".join(text).replace("  ", " "), "pick": group[0], "group": group,
            "build": builds, "missing": []}  # fmt: skip


def _cost(r: dict[str, Any]) -> str:
    c, name = r["cores"], NAMES[r["transport"]]
    mem = f" and {r['memory_gib']} GiB"
    if c["lo"] is None:
        return f"{name} needs at most {c['hi']:g} server cores (its capacity: at least){mem}"
    return f"{name} needs {c['lo']:g} to {c['hi']:g} server cores{mem}"


# What a knee in the group can lack, and how the paragraph says it ({} is the transports).
_KNEE_CAVEATS: tuple[tuple[Callable[[Knee], bool], str], ...] = (
    (lambda n: n.harness_bound,
     "the knee of {} was bounded by the load generator: its capacity is at least that"),
    (lambda n: n.cut,
     "the knee search of {} was stopped by its time budget (--knee-budget) before it ended: "
     "unsettled"),
    (lambda n: n.settled is False and not n.cut,
     "the knee of {} is unsettled (its interval, the bracket widened to the fit's, is wider "
     "than the search's target)"),
    (lambda n: n.unstable, "the knee of {} is unstable (its edges split between runs)"),
    (lambda n: n.passes < 2,
     "the knee of {} is one pass of the search: how far a second pass would move it is not in "
     "its interval"),
    (lambda n: bool(n.over_cores),
     "at the knee of {} the server used more CPU than its cores: its users per core are "
     "inflated"),
    (lambda n: n.escaped_threads != 0,
     "the knee run of {} did not check that every server thread stayed on the server's cores "
     "(runs before that check, or threads that escaped: a threaded server may have used the "
     "load generator's core)"),
    (lambda n: n.drifted, "the machine changed speed during the knee run of {}"),
)  # fmt: skip


def _caveats(
    docs: list[dict[str, Any]], faults: list[dict[str, Any]],
    lb_faults: list[dict[str, Any]] | None, browser: list[dict[str, Any]] | None,
    group: list[str], k: dict[str, Knee],
) -> list[str]:  # fmt: skip
    out = []
    ran = {e["scenario"] for e in faults}
    not_run = [s for s in SCENARIOS if s not in ran]
    if not_run:
        out.append(f"fault scenarios not run: {', '.join(not_run)}")
    for flagged, text in _KNEE_CAVEATS:  # each: the knees it holds for, named in the text
        names = " and ".join(NAMES[t] for t in group if flagged(k[t]))
        if names:
            out.append(text.format(names))
    unmeasured = [] if browser else ["real browsers"]
    if not lb_faults:
        unmeasured.insert(0, "a load balancer with several backends and a shared replay log")
    if not _several_load_machines(docs):
        unmeasured.append("several load machines")
    if unmeasured:
        out.append("not measured here: " + ", ".join(unmeasured))
    return out


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
        bad = sorted({e["scenario"] for e in pod if not e["passed"]})
        return [f"a replay log every backend reads (Redis Streams here), not the pod's memory: "
                f"behind the load balancer answers held in the pod lost tokens in "
                f"{', '.join(bad)}{_runs(pod)}"]  # fmt: skip
    return []


def _proxy(t: str, through: list[dict[str, Any]]) -> list[str]:
    """The nginx settings ``t`` needed: where nginx's defaults did not carry it (no stream, or
    its SLO broke) and the documented profile did."""
    from bench.report import proxies

    mine = [r for r in proxies.rows(through)
            if r.transport == t and r.lb == "nginx" and r.works is not None]  # fmt: skip
    d = [r for r in mine if r.profile == "defaults"]
    doc_ = [r for r in mine if r.profile == "documented"]
    failed = [r for r in d if not (r.works and r.slo_held)]
    if not failed or not doc_ or not all(r.works and r.slo_held for r in doc_):
        return []
    d = failed[0]
    saw = "no stream got through" if not d.works else "its SLO broke"
    return [
        f"nginx configured as documented ({', '.join(proxies.needed(t))}): through its "
        f"defaults {saw} (run `{d.run_id}`)"
    ]


def _browser(t: str, entries: list[dict[str, Any]]) -> list[str]:
    """What ``t``'s browser clients needed: HTTP/2 to the browser where a tab beyond the sixth
    waited over HTTP/1.1 and none did over HTTP/2."""
    from bench.report.browsers import waited

    wide = [e for e in entries if e["transport"] == t and e["fault"] == "none" and e["tabs"] > 6]
    h1 = [e for e in wide if e["network"] == "1.1" and waited(e)]
    h2 = [e for e in wide if e["network"] == "2"]
    if h1 and h2 and not any(waited(e) for e in h2):
        return [
            f"HTTP/2 from the browser to the load balancer (an ALB's HTTPS listener): over "
            f"HTTP/1.1 a Chromium tab beyond the sixth on one origin waited for a connection "
            f"({h1[0]['client']}, {h1[0]['tabs']} tabs)"
        ]
    return []


def _runs(entries: list[dict[str, Any]]) -> str:
    names = sorted({e["_run"] for e in entries if e.get("_run")})
    return f" (run {', '.join(f'`{n}`' for n in names)})" if names else ""


def _build(t: str, faults: list[dict[str, Any]]) -> list[str]:
    """What ``t``'s client as it comes failed in the fault runs, with the run that showed it."""
    build = []
    default = _faults_of(faults, t, "default")
    silent = [e for e in default if e["scenario"] == "blackhole" and e["unrecovered"]]
    if silent:
        build.append(f"a watchdog that reconnects after two heartbeats of silence (listening "
                     f"for {transports.get(t).watchdog}): the Python reader as it comes left "
                     f"{silent[0]['unrecovered']} of {silent[0]['clients']} streams unrecovered "
                     f"in the black hole{_runs(silent)}")  # fmt: skip
    refused = [e for e in default if "503" in (e.get("user_saw") or "") and e["unrecovered"]]
    if refused:
        build.append(f"a client that retries after a 5xx from the load balancer: a 503 ended "
                     f"{refused[0]['unrecovered']} of {refused[0]['clients']} streams in "
                     f"{refused[0]['scenario']}{_runs(refused)}")  # fmt: skip
    return build
