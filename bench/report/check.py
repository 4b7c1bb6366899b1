"""``tokenbench check``: the gates CI holds a run to, read from results.json.

- Guarantees, on every step of every run and every hardened fault client: no token lost, left
  unread, duplicated, out of order or wrong, every hardened stream recovered.
- Service (goodput, ``--p99-ms``), on the steps that count: every step of a run without a
  knee; of a knee run (a run with a ``knee`` record, ``--find-knee``) the steps at or below its
  knee that held the SLO. The steps above the knee broke it on purpose, and a repeat that broke
  at a count most of its runs held is the noise the knee's ``held_runs`` already report. A knee
  run in which no step held has no knee, and fails.
- Capacity (``--min-users-per-core``): each transport's knee, the lower edge of its half-open
  bracket [held, broke) per core (bench.report.figures.knees, passes pooled).
- Regression (``--baseline``, ``--max-regression``): users per core and server CPU per token at
  the same load against a baseline, each normalised by its run's yardstick
  (bench.report.compare.headline_intervals). A figure fails only when the regression is beyond
  the threshold at the edge of the two intervals most favourable to the new run: noise never
  fails a run, and a regression smaller than the intervals' width passes unseen. When the means
  alone cross the threshold the line is a note, not a failure.
"""

from __future__ import annotations

import math
from typing import Any

from bench.report import stats

BROKEN = ("lost", "unread", "duplicated", "out_of_order", "wrong_text")
# (compare.HEADLINES label, short name, lower is better): the figures a regression is judged on
REGRESSION_FIGURES = (
    ("users per core (normalised)", "users per core", False),
    ("server CPU per token at the same load (normalised)", "server CPU per token", True),
)


def fraction(text: str, name: str = "--max-regression") -> float:
    """ "10%" or "0.1" as 0.1; ValueError with a one-line message otherwise."""
    raw = text.strip()
    pct = raw.endswith("%")
    try:
        value = float(raw[:-1] if pct else raw)
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is not a fraction (0.1) or a percentage (10%)"
        ) from None
    value = value / 100 if pct else value
    if not (0 < value < 1) or not math.isfinite(value):
        raise ValueError(f"{name}: {text!r} must be above 0 and below 1 (or 100%)")
    return value


def positive(text: str, name: str) -> float:
    """A positive number, or ValueError with a one-line message."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: {text!r} must be above 0")
    return value


def counted(run: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The steps whose goodput and p99 count, and how many were left out (a knee run's steps
    above its knee, and repeats that broke at or below it)."""
    steps = run["steps"]
    if "knee" not in run:
        return steps, 0
    knee = run["knee"]
    if not knee:
        return [], len(steps)
    keep = [s for s in steps if s["clients"] <= knee["clients"] and s.get("slo", {}).get("held")]
    return keep, len(steps) - len(keep)


def problems_in(
    doc: dict[str, Any], min_goodput: float = 0.99, p99_ms: float | None = None
) -> list[str]:
    """One line per broken guarantee or service threshold in one document (module doc)."""
    out = []
    for run in doc.get("runs", []):
        stack = run.get("stack", "stock")
        name = run["transport"] + ("" if stack == "stock" else f" ({stack})")
        for st in run["steps"]:
            where = f"{doc['run_id']}: {name} at {st['clients']} users"
            for key in BROKEN:
                if st.get(key):
                    out.append(f"{where}: {st[key]} tokens {key.replace('_', ' ')}")
        if "knee" in run and not run["knee"]:
            out.append(f"{doc['run_id']}: {name}: a knee search in which no step held the SLO")
        for st in counted(run)[0]:
            where = f"{doc['run_id']}: {name} at {st['clients']} users"
            if st["goodput"] is None:
                out.append(f"{where}: goodput not measured (no token was due)")
            elif st["goodput"] < min_goodput:
                out.append(f"{where}: goodput {st['goodput']} < {min_goodput}")
            p99 = st["latency_ms"].get("p99")
            if p99_ms is not None and p99 is not None and p99 > p99_ms:
                out.append(f"{where}: p99 {p99:g} ms > {p99_ms:g} ms")
    for e in doc.get("faults", []):
        if e["mode"] == "hardened" and not e["passed"]:
            unread = "not measured" if e.get("unread", 0) is None else e.get("unread", 0)
            out.append(
                f"{doc['run_id']}: {e['scenario']} on {e['transport']} (hardened) failed: "
                f"lost {e['lost']}, unread {unread}, duplicated {e['duplicated']}, "
                f"unrecovered {e['unrecovered']}"
            )
    return out


def left_out(docs: list[dict[str, Any]]) -> int:
    """Steps of knee runs whose goodput and p99 were not judged (``counted``)."""
    return sum(counted(run)[1] for d in docs for run in d.get("runs", []))


def _bench(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bench documents of one server (behind the load balancer ones apart, as the report)."""
    from bench.report.behind_lb import split_docs

    return split_docs([d for d in docs if d.get("runs")])[0]


def capacity_problems(docs: list[dict[str, Any]], min_users_per_core: float) -> list[str]:
    """A transport whose knee (the users per core it held: the bracket's lower edge, not the
    fit's, which reaches as far as the runs do not) is under the minimum, or that has bench runs
    but no knee to judge."""
    from bench.report.figures import NAMES, knees

    bench = _bench(docs)
    k = knees(bench)
    ran = {r["transport"] for d in bench for r in d["runs"]}
    out = []
    for t in [*NAMES, *sorted(ran - set(NAMES))]:
        if t in k:
            lo = k[t].clients / k[t].server_cores
            if lo < min_users_per_core:
                out.append(f"{t}: knee {lo:,.1f} users per core < {min_users_per_core:g} "
                           f"(interval {stats.show(k[t].users_per_core.doc(1), 1)})")  # fmt: skip
        elif t in ran:
            out.append(f"{t}: no knee measured (a --find-knee run): users per core not judged")
    return out


def regressions(
    base: list[dict[str, Any]], docs: list[dict[str, Any]], max_regression: float
) -> tuple[list[str], list[str]]:
    """(failures, notes): users per core and CPU per token against the baseline (module doc).
    A figure the baseline has and the run lacks is a failure: missing is not a pass."""
    from bench.report.compare import headline_intervals

    ha, hb, unstable = headline_intervals(_bench(base), _bench(docs))
    fails, notes = [], []
    for label, short, lower in REGRESSION_FIGURES:
        for t in ha[label]:
            a, b = ha[label][t], hb[label].get(t)
            flag = " (unstable)" if unstable.get(f"{label}/{t}") else ""
            if b is None:
                what = "no knee" if not lower else "no CPU per token at a load both held"
                (fails if not lower else notes).append(f"{t}: {short}: {what} in this run")
                continue
            r, lo, hi = stats.ratio(a, b)
            if math.isnan(r):
                notes.append(f"{t}: {short}: the baseline's interval is too wide to compare")
                continue
            # the change as a regression (positive: worse), at the mean and at the best edge
            worse, best = (r - 1, lo - 1) if lower else (1 - r, 1 - hi)
            text = (f"{t}: {short} {stats.show(b.doc(2), 2)} against the baseline's "
                    f"{stats.show(a.doc(2), 2)}: {r:.2f}x")  # fmt: skip
            if best > max_regression:
                fails.append(f"{text}, worse by more than {max_regression:.0%} beyond both "
                             f"intervals{flag}")  # fmt: skip
            elif worse > max_regression:
                notes.append(f"{text}: over {max_regression:.0%} worse at the means, not beyond "
                             f"both intervals{flag}")  # fmt: skip
    return fails, notes
