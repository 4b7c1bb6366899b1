"""``tokenbench compare A B``: two runs side by side, B relative to A, noise flagged.

Steps are matched by transport and user count. For each figure the ratio B/A is shown with a
judgement: better or worse when the change is larger than that figure's noise, otherwise
"noise". A figure measured in windows in both runs is noise when the two 95 % intervals overlap
(bench.report.stats); otherwise a fixed threshold applies, from this project's own repeat runs
on a shared 2-core VM (CPU figures moved by up to about 20 % between identical runs, memory by a
few percent). A p99 backed by fewer than 1,000 tokens is always flagged: one slow token moves
it.

CPU figures are compared on what the code does: each is divided by its run's machine speed
(bench.load.yardstick) before the ratio is taken, and ``machine_ratio`` says how much slower B's
machine was than A's, the part of a raw difference that the machine explains.
"""

from __future__ import annotations

from typing import Any

from bench.report import stats
from bench.results.machine import speed
from bench.results.queries import headline_runs

# (label, getter, lower is better, noise threshold as a fraction, window key, CPU figure)
METRICS: tuple[tuple[str, Any, bool, float, str | None, bool], ...] = (
    ("tokens/s", lambda s: s["tokens_per_s"], False, 0.05, "tokens_per_s", False),
    ("goodput", lambda s: s["goodput"], False, 0.01, "goodput", False),
    ("p50 ms", lambda s: s["latency_ms"]["p50"], True, 0.25, "p50_ms", False),
    ("p99 ms", lambda s: s["latency_ms"]["p99"], True, 0.25, "p99_ms", False),
    ("server ms / 1k tok", lambda s: _ms(s["server"]["cpu_s_per_1k_tokens"]), True, 0.20,
     "cpu_s_per_1k_tokens", True),
    ("KiB / conn", lambda s: _kib(s["server"]["mem_per_conn_bytes"]), True, 0.08,
     "mem_per_conn_bytes", False),
    ("requests/s", lambda s: s["requests_per_s"], True, 0.10, "requests_per_s", False),
    ("bytes / token", lambda s: s["wire_bytes_per_token"], True, 0.05, None, False),
    ("loadgen µs / tok", lambda s: s["loadgen"]["cpu_us_per_token"], True, 0.20,
     "loadgen_cpu_us_per_token", True),
)  # fmt: skip


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _kib(v: float | None) -> float | None:
    return None if v is None else v / 1024


def judge(label: str, a: float | None, b: float | None, lower_better: bool, noise: float,
          samples: int) -> tuple[str, str]:  # fmt: skip
    """(ratio text, judgement) for one figure."""
    if a is None or b is None:
        return "-", "missing"
    if a == 0:
        return "-", "same" if b == 0 else "new"
    ratio = b / a
    if label == "p99 ms" and samples < 1000:
        return f"{ratio:.2f}", "noisy (few samples)"
    if abs(ratio - 1) <= noise:
        return f"{ratio:.2f}", "noise"
    improved = ratio < 1 if lower_better else ratio > 1
    return f"{ratio:.2f}", "better" if improved else "worse"


def _windows(step: dict[str, Any], key: str | None) -> stats.Interval | None:
    parts = step.get("windows") or []
    if key is None or len(parts) < 2:
        return None
    return stats.of(w.get(key) for w in parts)


def machine_ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """How much more CPU B's machine spent per unit of work than A's (their yardsticks), or
    None without both."""
    sa, sb = speed(a), speed(b)
    return None if sa is None or sb is None else sb / sa


def mean_ratio(docs_a: list[dict[str, Any]], docs_b: list[dict[str, Any]],
               of: Any = speed) -> float | None:  # fmt: skip
    """``machine_ratio`` over whole runs (with ``of=bench.results.machine.pace``: its wall-time
    twin): the mean over each run's documents, each measured before and after its own load."""
    va = [v for v in map(of, docs_a) if v is not None]
    vb = [v for v in map(of, docs_b) if v is not None]
    if not va or not vb:
        return None
    return (sum(vb) / len(vb)) / (sum(va) / len(va))


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    machine = machine_ratio(a, b)
    runs_a = {r["transport"]: r for r in headline_runs(a)}
    for run_b in headline_runs(b):
        run_a = runs_a.get(run_b["transport"])
        if run_a is None:
            continue
        steps_a = {s["clients"]: s for s in run_a["steps"]}
        for sb in run_b["steps"]:
            sa = steps_a.get(sb["clients"])
            if sa is None:
                continue
            samples = min(sa["latency_ms"].get("count", 0), sb["latency_ms"].get("count", 0))
            for label, get, lower, noise, key, cpu in METRICS:
                va, vb = get(sa), get(sb)
                scale = machine if cpu and machine else 1.0
                nb = None if vb is None else vb / scale  # B as if on A's machine
                ratio, verdict = judge(label, va, nb, lower, noise, samples)
                ia, ib = _windows(sa, key), _windows(sb, key)
                if ia and ib and verdict in ("better", "worse", "noise"):
                    ib = stats.Interval(ib.mean / scale, ib.lo / scale, ib.hi / scale, ib.n)
                    verdict = "noise" if ia.overlaps(ib) else verdict
                    if verdict == "noise" and abs(float(ratio) - 1) > noise:
                        verdict = "noise (intervals overlap)"
                rows.append({"transport": run_b["transport"], "clients": sb["clients"],
                             "metric": label, "a": va, "b": vb, "ratio": ratio,
                             "normalised": cpu and machine is not None,
                             "judgement": verdict})  # fmt: skip
    return rows


# --- two whole runs: verdicts and rankings ------------------------------------------------------

HEADLINES: tuple[tuple[str, bool], ...] = (
    ("users per core (normalised)", False),
    ("server CPU per token at the same load (normalised)", True),
    ("memory per connection", True),
)


def headline_intervals(
    docs_a: list[dict[str, Any]], docs_b: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, stats.Interval]], dict[str, dict[str, stats.Interval]],
           dict[str, bool]]:  # fmt: skip
    """Per headline figure, per transport, its interval in A and in B (normalised where the runs
    allow), and which figures are flagged unstable. CPU per token is taken at the same load in
    both runs (the most users both held), since it falls with load and two knees differ."""
    from bench.report.figures import cpu_at, held_counts, knees, memory

    ka, kb = knees(docs_a), knees(docs_b)
    out_a: dict[str, dict[str, stats.Interval]] = {h: {} for h, _ in HEADLINES}
    out_b: dict[str, dict[str, stats.Interval]] = {h: {} for h, _ in HEADLINES}
    unstable: dict[str, bool] = {}
    users, cpu, mem = (h for h, _ in HEADLINES)
    for out, k in ((out_a, ka), (out_b, kb)):
        for t, knee in k.items():
            out[users][t] = knee.normalised_users_per_core() or knee.users_per_core
            flag = knee.unstable or knee.drifted
            unstable[f"{users}/{t}"] = unstable.get(f"{users}/{t}", False) or flag
    for t in set(ka) & set(kb):
        common = held_counts(ka[t].steps) & held_counts(kb[t].steps)
        if not common:
            continue
        c = max(common)
        for out, k in ((out_a, ka[t]), (out_b, kb[t])):
            iv = cpu_at(k.steps, c)
            if iv is not None:
                out[cpu][t] = iv.scaled(1 / k.speed) if k.speed else iv
                if k.drifted:
                    unstable[f"{cpu}/{t}"] = True
    for out, docs in ((out_a, docs_a), (out_b, docs_b)):
        for t, (_, m) in memory(docs).items():
            out[mem][t] = m
    for label, _ in HEADLINES[1:]:
        for t in set(out_a[label]) | set(out_b[label]):
            ivs = [d[label][t] for d in (out_a, out_b) if t in d[label]]
            unstable[f"{label}/{t}"] = unstable.get(f"{label}/{t}") or any(
                i.unstable for i in ivs)  # fmt: skip
    return out_a, out_b, unstable


def flips(a: dict[str, stats.Interval], b: dict[str, stats.Interval]) -> list[str]:
    """Pairs that one run orders one way and the other the opposite way, beyond both noises.
    A tie in either run is no flip."""
    out = []
    names = sorted(set(a) & set(b))
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            ra, rb = stats.compare(a[x], a[y]), stats.compare(b[x], b[y])
            if "tie" not in (ra, rb) and ra != rb:
                out.append(f"{x} / {y}")
    return out


def whole_runs(docs_a: list[dict[str, Any]], docs_b: list[dict[str, Any]]) -> dict[str, Any]:
    """Verdicts and what to ship side by side, and for each headline figure whether the ranking
    flipped."""
    from bench.report import behind_lb, browsers, ship, stop
    from bench.report.tables import merge_faults
    from bench.report.verdicts import verdicts

    picks = []
    for docs in (docs_a, docs_b):
        bench, _ = behind_lb.split_docs([d for d in docs if d.get("runs")])
        faults, lb = behind_lb.split(merge_faults(docs))
        picks.append(ship.recommend(bench, faults, lb, browsers.entries(docs)))

    def judged(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
        with_runs = [d for d in docs if d.get("runs")]
        _, through = behind_lb.split_docs(with_runs)
        return verdicts(with_runs, merge_faults(docs), None, through, stop.docs(docs))

    va = judged(docs_a)
    vb = {v["claim"]: v for v in judged(docs_b)}
    claims = [
        {
            "claim": v["claim"],
            "a": v["verdict"],
            "b": vb.get(v["claim"], {}).get("verdict"),
            "same": v["verdict"] == vb.get(v["claim"], {}).get("verdict"),
        }
        for v in va
    ]
    ha, hb, unstable = headline_intervals(docs_a, docs_b)
    rankings = []
    for label, lower in HEADLINES:
        rankings.append({"figure": label, "a": _order(ha[label], lower),
                         "b": _order(hb[label], lower),
                         "flips": flips(ha[label], hb[label]),
                         "unstable": {t for t in ha[label] if unstable.get(f"{label}/{t}")},
                         "a_values": {t: i.doc(2) for t, i in ha[label].items()},
                         "b_values": {t: i.doc(2) for t, i in hb[label].items()}})  # fmt: skip
    ship_ab = {"a": picks[0]["group"], "b": picks[1]["group"],
               "same": picks[0]["group"] == picks[1]["group"]}  # fmt: skip
    return {"claims": claims, "rankings": rankings, "ship": ship_ab}


def flipped(whole: dict[str, Any]) -> list[str]:
    """What flipped between two runs (``whole_runs``), one line each: a verdict, a ranking (an
    order both runs are sure of, reversed), what to ship."""
    out = [f"verdict {c['claim']}: {c['a']} / {c['b']}" for c in whole["claims"] if not c["same"]]
    out += [f"ranking {r['figure']}: {', '.join(r['flips'])}" for r in whole["rankings"]
            if r["flips"]]  # fmt: skip
    sh = whole["ship"]
    if not sh["same"]:
        names = lambda g: " or ".join(g) or "none named"  # noqa: E731
        out.append(f"what to ship: {names(sh['a'])} / {names(sh['b'])}")
    return out


def _order(figures: dict[str, stats.Interval], lower_is_better: bool) -> list[str]:
    """Best first."""
    return sorted(figures, key=lambda t: figures[t].mean, reverse=not lower_is_better)
