"""``tokenbench compare A B``: two runs side by side, B relative to A, noise flagged.

Steps are matched by transport and user count. For each figure the ratio B/A is shown with a
judgement: better or worse when the change is larger than that figure's noise threshold,
otherwise "noise". The thresholds come from this project's own repeat runs on a shared 2-core
VM, where CPU figures moved by up to about 20 % between identical runs and memory by a few
percent. A p99 backed by fewer than 1,000 tokens, or a p99.9 by fewer than 10,000, is always
flagged: one slow token moves it.
"""

from __future__ import annotations

from typing import Any

# (label, getter, lower is better, noise threshold as a fraction)
METRICS: tuple[tuple[str, Any, bool, float], ...] = (
    ("tokens/s", lambda s: s["tokens_per_s"], False, 0.05),
    ("goodput", lambda s: s["goodput"], False, 0.01),
    ("p50 ms", lambda s: s["latency_ms"]["p50"], True, 0.25),
    ("p99 ms", lambda s: s["latency_ms"]["p99"], True, 0.25),
    ("server ms / 1k tok", lambda s: _ms(s["server"]["cpu_s_per_1k_tokens"]), True, 0.20),
    ("KiB / conn", lambda s: _kib(s["server"]["mem_per_conn_bytes"]), True, 0.08),
    ("requests/s", lambda s: s["requests_per_s"], True, 0.10),
    ("bytes / token", lambda s: s["wire_bytes_per_token"], True, 0.05),
    ("loadgen µs / tok", lambda s: s["loadgen"]["cpu_us_per_token"], True, 0.20),
)


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


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    runs_a = {r["transport"]: r for r in a.get("runs", [])}
    for run_b in b.get("runs", []):
        run_a = runs_a.get(run_b["transport"])
        if run_a is None:
            continue
        steps_a = {s["clients"]: s for s in run_a["steps"]}
        for sb in run_b["steps"]:
            sa = steps_a.get(sb["clients"])
            if sa is None:
                continue
            samples = min(sa["latency_ms"].get("count", 0), sb["latency_ms"].get("count", 0))
            for label, get, lower, noise in METRICS:
                va, vb = get(sa), get(sb)
                ratio, verdict = judge(label, va, vb, lower, noise, samples)
                rows.append({"transport": run_b["transport"], "clients": sb["clients"],
                             "metric": label, "a": va, "b": vb, "ratio": ratio,
                             "judgement": verdict})  # fmt: skip
    return rows
