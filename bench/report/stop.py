"""The stop button (``tokenbench stop``; bench/faults/stop.py): its table and its verdict.

A ``stop`` run's ``stops[]`` holds one entry per transport, with every user's figures. A
deployment is where the run went: one server, or behind a proxy with its source and replay log.
Each transport's "press to end" is stated as a median with its 95 % interval (distribution-free,
from order statistics: ``median_ci``), so two transports differ only where their intervals do
not overlap.

"The stop button favours WebSocket", per deployment measured with WebSocket and another:
- refuted: another transport ends sooner than WebSocket, beyond the noise;
- tie: some other transport's interval overlaps WebSocket's;
- nuanced: WebSocket ends sooner than every other beyond the noise, by less than one token's
  gap (1/rate) at the median;
- confirmed: sooner than every other by at least one token's gap.
A transport is judged only with at least ``MIN_USERS`` users, every one of whose stops took
effect; otherwise it is named as not measured. Deployments that disagree make the verdict
nuanced, each named with its own outcome. No stop run: not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import transports
from bench.report.figures import NAMES

WS = "ws"  # the claim's transport (its record: in-band stop)
MIN_USERS = 6  # under 6 the median's interval is not 95 % (the whole range of 5 is 93.75 %)


@dataclass(frozen=True)
class Stopped:
    transport: str
    where: str  # "one server", or "behind haproxy (llm, redis)"
    users: int
    stopped: int
    end_ms: list[float]
    last_p50: float | None
    model_p50: float | None
    wasted: int
    wasted_max: int | None
    resumed: int | None
    errors: list[str]
    rate: float
    run_id: str

    @property
    def ci(self) -> tuple[float, float, float] | None:
        return median_ci(self.end_ms)

    @property
    def judged(self) -> bool:
        """Enough users, and every one's stop took effect."""
        return self.users >= MIN_USERS and self.stopped == self.users


def median_ci(values: list[float]) -> tuple[float, float, float] | None:
    """(median, low, high): the median with a 95 % interval from order statistics (the
    binomial ranks around n/2); with under 6 values, the whole range. None without values."""
    if not values:
        return None
    xs, n = sorted(values), len(values)
    mid = (xs[(n - 1) // 2] + xs[n // 2]) / 2
    if n < 6:
        return mid, xs[0], xs[-1]
    # largest j with P(Bin(n, 1/2) < j) <= 2.5 %: the interval is [x_(j), x_(n+1-j)], 1-based
    cum, j = 0.0, 0
    while True:
        p = math.comb(n, j) / 2**n
        if cum + p > 0.025:
            break
        cum += p
        j += 1
    j = max(j, 1)
    return mid, xs[j - 1], xs[n - j]


def _where(doc: dict[str, Any], e: dict[str, Any]) -> str:
    """The deployment, with what else changes a stop's path: the stack and the workers."""
    topo = e.get("topology") or {}
    cfg = doc.get("config", {})
    workers = cfg.get("workers", 1)
    how = f"{cfg.get('stack', 'stock')}, {workers} worker{'s' if workers != 1 else ''}"
    lb = topo.get("lb") if isinstance(topo.get("lb"), str) else ("haproxy" if topo.get("lb")
                                                                   else None)  # fmt: skip
    if not lb:
        return f"one server ({how})"
    source = cfg.get("source", "derive")
    log = f", {cfg.get('replay')}" if source == "llm" else ""
    return f"behind {lb}, {topo.get('backends', '?')} backends ({how}; {source}{log})"


def rows(docs: list[dict[str, Any]]) -> list[Stopped]:
    out = []
    for doc in docs:
        for e in doc.get("stops", []):
            out.append(Stopped(
                e["transport"], _where(doc, e), e["users"], e["stopped"],
                list(e["stop_to_end_ms"]["values"]), e["stop_to_last_ms"]["p50"],
                e["model_stop_ms"]["p50"], e["wasted"]["total"], e["wasted"]["max"],
                e["resumed_tokens"], list(e["errors"]), float(doc["config"].get("rate", 40.0)),
                doc["run_id"],
            ))  # fmt: skip
    order = {name: i for i, name in enumerate(NAMES)}
    return sorted(out, key=lambda r: (not r.where.startswith("one server"), r.where,
                                      order.get(r.transport, 99)))  # fmt: skip


def docs(all_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``tokenbench stop`` runs among ``all_docs``."""
    return [d for d in all_docs if d.get("stops")]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _ci(r: Stopped) -> str:
    c = r.ci
    return "-" if c is None else f"{c[0]:.1f} [{c[1]:.1f}, {c[2]:.1f}]"


def markdown(docs: list[dict[str, Any]]) -> list[str]:
    found = rows(docs)
    if not found:
        return []
    lines = [
        "", "## The stop button", "",
        "Each user presses stop at a random moment of its answer (`tokenbench stop`; "
        "docs/protocol.md, \"Stop\"). Press to end: until the stream's end reached the client, "
        "median [95 % interval]. Model stopped: the press to the end's `stopped` time. Tokens "
        "made after the press all reach the client. Resume: tokens a read resumed after the "
        "stop got (0 is right).", "",
        "| transport | where | stop sent as | stopped | press to last token ms | press to end ms "
        "| model stopped ms | tokens after the press (max) | resume | run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in found:
        resumed = "not measured" if r.resumed is None else str(r.resumed)
        if r.resumed:
            resumed = f"**{r.resumed}**"
        stopped = f"{r.stopped}/{r.users}" if r.stopped == r.users else f"**{r.stopped}/{r.users}**"
        lines.append(
            f"| {NAMES.get(r.transport, r.transport)} | {r.where} | "
            f"{transports.get(r.transport).stop} | {stopped} | {_ms(r.last_p50)} | {_ci(r)} | "
            f"{_ms(r.model_p50)} | {r.wasted} ({'-' if r.wasted_max is None else r.wasted_max})"
            f" | {resumed} | `{r.run_id}` |"
        )
    errors = sorted({f"{NAMES.get(r.transport, r.transport)}: {x}" for r in found
                     for x in r.errors})  # fmt: skip
    if errors:
        lines += ["", "Errors: " + "; ".join(errors[:8])]
    return lines


def _judge(ws: Stopped, others: list[Stopped]) -> tuple[str, str]:
    """One deployment's outcome and its text."""
    w = ws.ci
    assert w is not None
    gap_ms = 1000 / ws.rate
    parts, outcome = [], "confirmed"
    for o in others:
        c = o.ci
        assert c is not None
        name = NAMES.get(o.transport, o.transport)
        parts.append(f"{name} {c[0]:.1f} [{c[1]:.1f}, {c[2]:.1f}]")
        if c[2] < w[1]:
            outcome = "refuted"
        elif c[1] <= w[2] and outcome != "refuted":
            outcome = "tie"
        elif outcome == "confirmed" and c[0] - w[0] < gap_ms:
            outcome = "nuanced"
    text = (f"{ws.where}: press to end, WebSocket {w[0]:.1f} [{w[1]:.1f}, {w[2]:.1f}] ms "
            f"against {', '.join(parts)}")  # fmt: skip
    made = ", ".join(f"{NAMES.get(r.transport, r.transport)} {r.wasted}" for r in [ws, *others])
    text += f"; tokens made after the press that reached the users: {made} ({outcome}"
    if outcome == "nuanced":
        text += f": sooner beyond the noise but by less than one token's gap, {gap_ms:.0f} ms"
    elif outcome == "tie":
        text += ": the intervals overlap"
    return outcome, text + ")"


def verdicts(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    claim = "The stop button favours WebSocket (the one message that flows back)"
    by_where: dict[str, dict[str, Stopped]] = {}
    unjudged: list[str] = []
    for r in rows(docs):
        if r.judged and r.ci is not None:
            by_where.setdefault(r.where, {})[r.transport] = r  # the latest run of each
        else:
            unjudged.append(f"{NAMES.get(r.transport, r.transport)} ({r.where}: {r.stopped} of "
                            f"{r.users} users stopped; {MIN_USERS} or more, all stopped, "
                            "needed)")  # fmt: skip
    judged = [(_judge(g[WS], [o for t, o in g.items() if t != WS]), g)
              for g in by_where.values() if WS in g and len(g) > 1]  # fmt: skip
    tail = f"; not judged: {', '.join(unjudged)}" if unjudged else ""
    if not judged:
        why = "needs tokenbench stop with WebSocket and another transport"
        return [{"claim": claim, "verdict": "not measured", "why": why + tail}]
    outcomes = {o for (o, _), _ in judged}
    verdict = outcomes.pop() if len(outcomes) == 1 else "nuanced"
    why = "; ".join(text for (_, text), _ in judged)
    leaks = [f"{NAMES.get(t, t)} ({r.where})" for _, g in judged for t, r in g.items()
             if r.resumed]  # fmt: skip
    if leaks:
        why += f"; a resume after the stop returned tokens on {', '.join(leaks)}"
    return [{"claim": claim, "verdict": verdict, "why": why + tail}]
