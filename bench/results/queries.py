"""Queries over results documents: which runs are which variant, and what a knee run implies.

Reporting and measuring both ask these (the headline runs, a run's variant, the token rate a
knee implies for ``--rate-from``); they read documents only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    """What a run's server is, beyond its transport: its stack, GC policy and write window."""

    stack: str = "stock"
    gc: str = "stock"
    flush_ms: float = 0.0

    @property
    def label(self) -> str:
        """ "" for the stock server as it comes; else what differs, e.g. "lean, flush 100 ms"."""
        parts = [self.stack] if self.stack != "stock" else []
        if self.gc != "stock":
            parts.append(f"gc {self.gc}")
        if self.flush_ms:
            parts.append(f"flush {self.flush_ms:g} ms")
        return ", ".join(parts)


def variant_of(run: dict[str, Any]) -> Variant:
    return Variant(run.get("stack", "stock"), run.get("gc", "stock"), run.get("flush_ms", 0.0))


def runs_of(doc: dict[str, Any], variant: Variant) -> list[dict[str, Any]]:
    return [r for r in doc.get("runs", []) if variant_of(r) == variant]


def headline_runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of stock servers as they come: what the headline figures and verdicts read.
    Other variants (lean stacks, tuned GC, a write window) are reported beside them."""
    return runs_of(doc, Variant())


def rates_from(doc: dict[str, Any], clients: int, share: float) -> dict[str, float]:
    """Per transport, the token rate per user at which ``clients`` users load the server to
    ``share`` of the tokens per second it held at its knee in ``doc`` (a --find-knee run).
    A transport with no knee (it broke at its first step) gets ``share`` of that step's rate."""
    out = {}
    for run in headline_runs(doc):
        knee = run.get("knee")
        steps = sorted(run["steps"], key=lambda s: s["clients"])
        tokens_per_s = knee["tokens_per_s"] if knee else (steps[0]["tokens_per_s"] if steps else 0)
        if tokens_per_s:
            out[run["transport"]] = round(share * tokens_per_s / clients, 4)
    return out
