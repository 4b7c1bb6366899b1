"""``tokenbench check``: the guarantees CI holds every run to, read from results.json."""

from __future__ import annotations

from typing import Any

BROKEN = ("lost", "unread", "duplicated", "out_of_order", "wrong_text")


def problems_in(doc: dict[str, Any], min_goodput: float = 0.99) -> list[str]:
    """One line per broken guarantee: a token lost, repeated or wrong, goodput under
    ``min_goodput``, or a hardened client that did not recover from a fault."""
    out = []
    for run in doc.get("runs", []):
        for st in run["steps"]:
            where = f"{doc['run_id']}: {run['transport']} at {st['clients']} users"
            for key in BROKEN:
                if st.get(key):
                    out.append(f"{where}: {st[key]} tokens {key.replace('_', ' ')}")
            if st["goodput"] is None:
                out.append(f"{where}: goodput not measured (no token was due)")
            elif st["goodput"] < min_goodput:
                out.append(f"{where}: goodput {st['goodput']} < {min_goodput}")
    for e in doc.get("faults", []):
        if e["mode"] == "hardened" and not e["passed"]:
            unread = "not measured" if e.get("unread", 0) is None else e.get("unread", 0)
            out.append(
                f"{doc['run_id']}: {e['scenario']} on {e['transport']} (hardened) failed: "
                f"lost {e['lost']}, unread {unread}, duplicated {e['duplicated']}, "
                f"unrecovered {e['unrecovered']}"
            )
    return out
