"""The measured blocks of README.md and docs/findings.md, made from committed runs.

A block between ``<!-- generated: NAME (COMMAND) -->`` and ``<!-- end: NAME -->`` is what
``EXCERPTS[NAME]`` makes of its runs with the report's own functions (ship, figures, variants,
tables, behind_lb, browsers, verdicts); nothing here measures or reads a REPORT.md, so the blocks
follow the report's rules. Each block ends with the runs it read, their commits, and whether their
tree was dirty. ``make readme`` rewrites every block; tests/test_readme.py fails when one differs.

    python -m bench.report.excerpt            # rewrite the blocks in README.md, docs/findings.md
    python -m bench.report.excerpt NAME...    # print blocks
    python -m bench.report.excerpt --check    # exit 1 when a file differs from its runs
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import transports
from bench import results
from bench.report import (
    behind_lb,
    browsers,
    figures,
    proxies,
    recovery,
    ship,
    stats,
    stop,
    targets,
    variants,
    verdicts,
)
from bench.report.figures import NAMES
from bench.report.tables import faults_markdown, merge_faults
from bench.results.queries import variant_of

ROOT = Path(__file__).resolve().parents[2]
NAMES_ORDER = {name: i for i, name in enumerate(NAMES)}  # the registry's order
FILES = ("README.md", "docs/findings.md")
BLOCK = re.compile(r"<!-- generated: (\S+) \([^\n]*\) -->\n.*?<!-- end: \1 -->", re.S)


class Runs(NamedTuple):
    """The runs of an excerpt as the report reads them (bench.report.build.build)."""

    paths: tuple[str, ...]
    docs: list[dict[str, Any]]
    bench: list[dict[str, Any]]  # bench runs on one server
    through: list[dict[str, Any]]  # bench runs through the load balancer
    faults: list[dict[str, Any]]
    lb_faults: list[dict[str, Any]]
    browser: list[dict[str, Any]]


@cache
def _load(path: str) -> dict[str, Any]:
    return results.load(ROOT / path)


def runs(paths: tuple[str, ...]) -> Runs:
    docs = [_load(p) for p in paths]
    bench, through = behind_lb.split_docs([d for d in docs if d.get("runs")])
    faults, lb_faults = behind_lb.split(merge_faults(docs))
    return Runs(paths, docs, bench, through, faults, lb_faults, browsers.entries(docs))


def _path(r: Runs, doc: dict[str, Any]) -> str:
    """A run as the tables name it: its path under results/."""
    return next(p for p, d in zip(r.paths, r.docs, strict=True) if d is doc)[len("results/") :]


def _md(head: str, rows: list[list[str]]) -> str:
    """A Markdown table: ``head`` is the columns joined by " | "."""
    cols = head.split(" | ")
    return "\n".join("| " + " | ".join(row) + " |" for row in [cols, ["---"] * len(cols), *rows])


def _table(lines: list[str]) -> str:
    """The first Markdown table of a report section (its heading and prose are the report's)."""
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def _f(v: float | None, fmt: str = ",.1f") -> str:
    return "-" if v is None else format(v, fmt)


def ship_md(r: Runs) -> str:
    return "> " + ship.recommend(r.bench, r.faults, r.lb_faults, r.browser)["text"]


def _reconnects(t: str, faults: list[dict[str, Any]]) -> str:
    """A close's reconnect, what the client as it comes never recovered from, and the hardened
    client's longest stall."""
    mine = [e for e in faults if e["transport"] == t]
    close = [e["reconnect_ms"]["p50"] for e in mine if (e["scenario"], e["mode"]) == ("close",
             "default")]  # fmt: skip
    lost = [e["scenario"] for e in mine if e["mode"] == "default" and e["unrecovered"]]
    hard = [e for e in mine if e["mode"] == "hardened"]
    stall = max((e["max_stall_ms"] or 0 for e in hard), default=0) / 1000
    ok = "every stream" if all(e["passed"] for e in hard) else "**not every stream**"
    return "; ".join([f"close: back in {v:,.0f} ms" for v in close] + [
        f"as it comes, never recovered: {', '.join(lost) or 'none'}",
        f"hardened: {ok}, longest stall {stall:.1f} s"])  # fmt: skip


def transports_md(r: Runs) -> str:
    """One row per transport: capacity, CPU and memory (figures.fleet), reconnects (faults)."""
    rows = []
    for f in figures.fleet(r.bench):
        c, t = f["cores"], f["transport"]
        rows.append([
            NAMES[t], ("≥ " if f["harness_bound"] else "") + stats.show(f["users_per_core"]),
            f"≤ {c['hi']:,}" if c["lo"] is None else f"{c['lo']:,} to {c['hi']:,}",
            stats.show(f["cpu_us_per_token"], 1),
            f"{f['mem_per_conn_kib']} KiB ({f['memory_measured_at']:,})",
            _reconnects(t, r.faults)])  # fmt: skip
    return _md("transport | users per core (interval) | server cores for 50,000 at 40 tok/s "
               "| server CPU µs / token at the knee | memory per connection (at) | reconnects",
               rows)  # fmt: skip


def verdicts_md(r: Runs) -> str:
    found = verdicts.verdicts(r.bench, r.faults + r.lb_faults, r.browser, r.through,
                              stop.docs(r.docs))  # fmt: skip
    return _md("claim | verdict | the numbers", [[v["claim"], f"**{v['verdict']}**", v["why"]]
               for v in found if v["verdict"] != "not measured"])  # fmt: skip


def knees_md(r: Runs) -> str:
    """Each run's knee per transport and server variant."""
    rows = []
    for doc in r.bench:
        for v in dict.fromkeys(variant_of(run) for run in doc["runs"]):
            for t, k in figures.knees([doc], v).items():
                norm = k.normalised_users_per_core()
                at = [s for s in k.steps if s["clients"] == k.clients]
                gen = stats.of(figures.windows(at, "loadgen_cpu_us_per_token"))
                cpu = k.cpu_us_per_token
                rows.append([
                    f"`{_path(r, doc)}`", NAMES[t], v.label or "stock",
                    ("≥ " if k.harness_bound else "") + stats.show(k.users_per_core.doc(1))
                    + (" (unsettled)" if k.settled is False else ""),
                    stats.show(norm.doc(1)) if norm else "-",
                    stats.show(cpu.doc(2) if cpu else None, 1), _f(gen and gen.mean)])  # fmt: skip
    return _md("run | transport | server | users per core (interval) | normalised | server "
               "CPU µs / token | loadgen µs / token", rows)  # fmt: skip


def holds_md(r: Runs) -> str:
    """The busiest step of each hold run: who connected, and what they got."""
    rows = []
    for doc in r.bench:
        rates = doc["config"].get("rates") or {}
        for run in doc["runs"]:
            st, t = run["steps"][-1], run["transport"]
            srv, lat = st["server"], st["latency_ms"]
            ttft = st["ttft_ms"]["p99"] / 1e3 if st["ttft_ms"].get("count") else None
            mem, cpu = srv["mem_per_conn_bytes"], srv["cpu_s_per_1k_tokens"]
            gen = st["loadgen"]
            ramped = (st.get("ramp") or {}).get("users_connected")
            silent = gen.get("silent")  # load processes that never reported in the window
            quiet = "not counted" if silent is None else f"{silent} of {silent + gen['processes']}"
            rows.append([
                f"`{_path(r, doc)}`", NAMES[t], variant_of(run).label or "stock",
                f"{rates.get(t, doc['config'].get('rate')):g}",
                f"{ramped or st.get('users') or st['clients']:,} of {st['clients']:,}",
                _f(st["tokens_per_s"], ",.0f"), _f(lat["p50"]), _f(lat["p99"]), _f(ttft),
                str(st["goodput"]), str(st["lost"]), _f(st.get("unread"), ","),
                _f(mem and mem / 1024), _f(cpu and cpu * 1e3), _f(gen.get("cpu_us_per_token")),
                quiet])  # fmt: skip
    return _md("run | transport | server | tok/s per user | users connected of asked | tok/s | "
               "p50 ms | p99 ms | first token p99 s | goodput | lost | unread | KiB / conn | "
               "server µs / tok | load µs / tok | load processes silent", rows)  # fmt: skip


def churn_md(r: Runs) -> str:
    """Users arriving as fast as the server accepts them (an adaptive ramp): how many connected
    in its budget, the best accept rate, and the cores each side used over the ramp."""
    rows = []
    for doc in r.bench:
        commit = ((doc["machine"].get("git") or {}).get("commit") or "")[:7] or "-"
        for run in doc["runs"]:
            st = run["steps"][-1]
            ramp, gen = st.get("ramp") or {}, st["loadgen"]
            rows.append([
                f"`{_path(r, doc)}`", commit, gen.get("loop") or "uvloop",
                f"{ramp.get('users_connected', 0):,} of {st['clients']:,}",
                _f(ramp.get("took_s"), ".0f"), _f(ramp.get("accept_per_s"), ",.0f"),
                _f(ramp.get("server_cores_used"), ".2f"),
                _f(ramp.get("loadgen_cores_used"), ".2f"), ramp.get("limited_by") or "-",
                _f(st["latency_ms"]["p99"]), str(st["lost"])])  # fmt: skip
    return _md("run | commit | load event loop | connected of asked | in s | accepts / s (best "
               "3 s) | server cores | loadgen cores | limited by | p99 ms | lost",
               rows)  # fmt: skip


def conversation_md(r: Runs) -> str:
    """What one conversation (prompt POST, connection, answer, close) costs each side: all the
    CPU of the window divided by the conversations that ended in it, tokens included; the
    server's memory per connection at the window's end, and the run's yardstick beside them."""
    rows = []
    for doc in r.bench:
        commit = ((doc["machine"].get("git") or {}).get("commit") or "")[:7] or "-"
        for run in doc["runs"]:
            st = run["steps"][-1]
            per_s = st["streams_done"] / st["window_s"] if st["window_s"] else None
            tok = st["tokens_per_s"]
            cpu, mem = st["server"]["cpu_s_per_1k_tokens"], st["server"]["mem_per_conn_bytes"]
            srv_us = None if cpu is None else cpu * 1e3
            gen_us = st["loadgen"]["cpu_us_per_token"]
            tokens = tok / per_s if per_s else None  # per conversation
            srv_conv = None if srv_us is None or tokens is None else srv_us * tokens
            gen_conv = None if gen_us is None or tokens is None else gen_us * tokens
            rows.append([
                f"`{_path(r, doc)}`", commit, f"{st['clients']:,}", _f(per_s, ",.0f"),
                _f(tok, ",.0f"), _f(tokens), _f(srv_us), _f(srv_conv, ",.0f"), _f(gen_us),
                _f(gen_conv, ",.0f"),
                _f(mem and mem / 1024), _f(targets.syscall_us(doc))])  # fmt: skip
    return _md("run | commit | users | conversations / s | tok/s | tokens / conversation | "
               "server µs / tok | server µs / conversation | load µs / tok | load µs / "
               "conversation | server KiB / conn | syscall_us", rows)  # fmt: skip


def loadgen_md(r: Runs) -> str:
    """The load generator's CPU per token against the server's and the run's yardstick, per
    receive path and event loop (``loop``: runs before it existed read through uvloop)."""
    rows = []
    for doc in r.bench:
        sys_us = targets.syscall_us(doc)
        for run in doc["runs"]:
            st = run["steps"][-1]
            # a transport whose load processes read with their own client (gRPC: h2, not grpcio)
            own = transports.get(run["transport"]).load_reader is not None
            gen, srv = st["loadgen"], st["server"]["cpu_s_per_1k_tokens"] * 1e3
            path = ("own client + compiled" if own else "compiled") if gen["fast_path"] else (
                "reference client" if own else "Python")  # fmt: skip
            us = gen["cpu_us_per_token"]
            rows.append([
                NAMES[run["transport"]], path, gen.get("loop") or "uvloop", f"{st['clients']:,}",
                _f(us), _f(gen["sys_us_per_token"]), _f(sys_us and us / sys_us, ".2f"), _f(srv),
                _f(us / srv, ".2f"), _f(st["latency_ms"]["p50"]),
                _f(st["latency_ms"]["p99"])])  # fmt: skip
    return _md("transport | receive path | event loop | users | loadgen µs / token | of which "
               "kernel | × syscall_us | server µs / token | ratio | p50 ms | p99 ms",
               rows)  # fmt: skip


def lb_matrix_md(r: Runs) -> str:
    """Scenario down, deployment across (hardened clients): ok, or the transports that lost."""
    deps = sorted({behind_lb.deployment(e) for e in r.lb_faults})
    dirty = {d["run_id"] for d in r.docs if (d["machine"].get("git") or {}).get("dirty")}
    head = [d + (" (dirty tree)" if any(e["_run"] in dirty for e in r.lb_faults
                                        if behind_lb.deployment(e) == d) else "")
            for d in deps]  # fmt: skip
    rows = []
    for sc in dict.fromkeys(e["scenario"] for e in r.lb_faults):
        cells = []
        for d in deps:
            got = [e for e in r.lb_faults if (e["scenario"], behind_lb.deployment(e), e["mode"])
                   == (sc, d, "hardened")]  # fmt: skip
            bad = sorted(e["transport"] for e in got if not e["passed"])
            cells.append("-" if not got else f"**lost tokens or streams: {', '.join(bad)}**"
                         if bad else "ok")  # fmt: skip
        rows.append([sc, *cells])
    return _md(" | ".join(["scenario", *head]), rows)


def lb_detail_md(r: Runs) -> str:
    """Every fault run behind the load balancer, one row each: reconnects, stall, what the user
    saw (the second table of the report's *Behind the load balancer*)."""
    lines = behind_lb.matrix_md(r.lb_faults)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| scenario | transport | rep"))
    return "\n".join(lines[start:])


def reconnects_md(r: Runs) -> str:
    """Scenario and transport down, deployment across: reconnects of the clients as they come /
    hardened, and tokens lost or streams unrecovered where any were."""
    deps = sorted({behind_lb.deployment(e) for e in r.lb_faults})
    rows = []
    keys = dict.fromkeys((e["scenario"], e["transport"]) for e in r.lb_faults)
    for sc, t in sorted(keys, key=lambda k: (k[0], NAMES_ORDER.get(k[1], 99))):
        cells = []
        for d in deps:
            got = {
                e["mode"]: e
                for e in r.lb_faults
                if (e["scenario"], e["transport"], behind_lb.deployment(e)) == (sc, t, d)
            }
            if not got:
                cells.append("-")
                continue
            counts = " / ".join(str(got[m].get("reconnects", "?")) if m in got else "-"
                                for m in ("default", "hardened"))  # fmt: skip
            bad = [f"{m}: lost {e['lost']}, unrecovered {e['unrecovered']}"
                   for m, e in got.items() if not e["passed"]]  # fmt: skip
            cells.append(counts + (f" (**{'; '.join(bad)}**)" if bad else ""))
        rows.append([sc, NAMES.get(t, t), *cells])
    return _md(" | ".join(["scenario", "transport", *deps]), rows)


def wall_md(r: Runs) -> str:
    """How long a committed ``make bench`` took, from its jobs.json: wall time from make's start
    (installs included) to the report, and each job's."""
    from bench import profiles

    doc = profiles.read((ROOT / r.paths[0]).parent / "jobs.json")
    if doc is None:
        return "not measured (no jobs.json)"
    jobs = ", ".join(f"{j['name']} {j['wall_s'] / 60:.1f}" for j in doc["jobs"])
    off = [f"{j['name']} ({j['status']})" for j in doc["jobs"] if j["status"] != "ran"]
    m = r.docs[0]["machine"]
    return (f"`make bench` took **{doc['wall_s'] / 60:.1f} minutes** from a fresh clone on "
            f"{m['cpu_model']} with {m['cores']} cores, installs included (minutes per job: "
            f"{jobs}" + (f"; not run: {', '.join(off)}" if off else "") + ").")  # fmt: skip


def _lines(*parts: list[str] | str) -> str:
    return "\n".join(p if isinstance(p, str) else "\n".join(p) for p in parts).strip("\n")


def provenance(paths: tuple[str, ...]) -> str:
    """The runs a block read, with their commit and whether the tree was dirty."""
    groups: list[tuple[str, list[str]]] = []
    for p in paths:
        git = _load(p)["machine"].get("git") or {}
        state = {True: "**dirty tree**", False: "clean tree"}.get(git.get("dirty"), "tree unknown")
        tree = f"commit {str(git.get('commit'))[:7]}, {state}"
        if groups and groups[-1][0] == tree:
            groups[-1][1].append(p)
        else:
            groups.append((tree, [p]))
    said = "; ".join(", ".join(f"`{p}`" for p in ps) + f" ({tree})" for tree, ps in groups)
    return f"Runs: {said}."


def _under(base: str, *names: str) -> tuple[str, ...]:
    return tuple(f"results/{base}{n}" for n in names)


def _section(make: Callable[..., list[str]]) -> Make:
    """A report section's first table, from the bench runs on one server."""
    return lambda r: _table(make(r.bench))


Make = Callable[[Runs], str]
# The baseline: a make bench (tokenbench profile decision) from a fresh clone, every job of it.
BASELINE_RUN = "20261207-050405"
BASELINE = _under(f"{BASELINE_RUN}/", "knee", "hold-50k", "faults", "lb-pod", "lb-redis",
                  "lb-redis-sse", "browser")  # fmt: skip
LB_FAULTS = _under("20261207-lb/faults-", "pod", "pod-sticky", "redis", "redis-sticky")
BROWSER = "20261203-browser/browser-"
PROXY_RUN = "20261207-proxies"  # make bench-deep PROFILES=proxies
PROXIES = _under(f"{PROXY_RUN}/", "proxy-nginx-defaults", "proxy-nginx-documented",
                 "proxy-haproxy")  # fmt: skip
EDGE = "20261207-edge/"  # make bench-deep PROFILES=edge
STOP = _under("20261207-stop/", "stop", "stop-lb")  # make bench-deep PROFILES=stop
# name -> (the runs it reads, what it makes of them)
EXCERPTS: dict[str, tuple[tuple[str, ...], Make]] = {
    "ship": (BASELINE, ship_md),
    "transports": (BASELINE, transports_md),
    "verdicts": (BASELINE, verdicts_md),
    "baseline-faults": (BASELINE, lambda r: _lines(faults_markdown(r.faults),
                                                   recovery.rankings_md(r.faults))),
    "hold-50k": (_under(f"{BASELINE_RUN}/", "hold-50k"), holds_md),
    "make-bench-wall": (_under(f"{BASELINE_RUN}/", "knee"), wall_md),
    "passes": (_under("20261207-passes/", "run1/knee", "run1/knee-2", "run2/knee", "run2/knee-2")
               + _under("20261207-twice/", "knee-a", "knee-b"), knees_md),
    # Steps as independent trials (cd4516f), then the searches taking turns (d342bf0).
    "turns": (_under("20261207-indep/", "knee-a", "knee-b")
              + _under("20261207-turns/", "knee-a", "knee-b", "knee-c"), knees_md),
    "decision-runs": (_under("", "20261207-043144/knee", "20261207-044841/knee",
                             f"{BASELINE_RUN}/knee"), knees_md),
    "agreement": (_under("", "20261201-211858/knee", "20261201-214728/knee", "slowed-knee"),
                  knees_md),
    "cluster": (_under("20261201-cluster-proof2/", "local-1", "cluster-2", "local-3",
                       "cluster-4"), knees_md),
    "stacks-lean": (_under("20261202-003637/", "knee", "knee-lean"),
                    _section(variants.stacks_md)),
    "stacks-granian": (_under("", "20261203-stacks"), _section(variants.stacks_md)),
    # Lean and floor side by side, taking turns (issue 26; commit 820b90f).
    "stacks-floor": (_under("20261207-floor/", "knee"), _section(variants.stacks_md)),
    "flush-floor": (_under("20261207-floor/", "flush"),
                    _section(lambda d: variants.flush_md(variants.flush_points(d)))),
    "hold-floor": (_under("20261207-floor/", "hold-50k")
                   + _under("20261207-hold-floor/", "gc-stock", "gc-tuned", "ramp-180s",
                            "backlog", "loader-gc-nochurn", "loader-gc", "stationary",
                            "stationary-noleak", "profile-15k"),
                   holds_md),
    "conversation-floor": (_under("20261207-hold-floor/", "churn-1000", "churn-1000-ownconnect",
                                  "churn-1000-noleak", "loader-gc-nochurn")
                           + _under("20261208-floor-cycles/", "churn-1000-before", "churn-1000"),
                           conversation_md),
    # Issue 26's targets, each judged against its run's yardstick (bench/report/targets.py).
    "floor-targets": (_under("20261207-floor/", "knee")
                      + _under("20261208-targets/", "memory-10k", "hold-50k")
                      + _under("", "20261207-221507/knee"),
                      lambda r: targets.markdown(r.bench)),
    "churn-floor": (_under("20261207-churn/", "asgi1", "floor1", "asgi2", "floor2",
                           "floor-compiled"), churn_md),
    "flush": (_under("20261202-003637/", "flush", "flush-grpc"),
              _section(lambda d: variants.flush_md(variants.flush_points(d)))),
    "knees-flush100": (_under("20261203-lean/", "knee-flush100", "knee-grpc"), knees_md),
    "gc": (_under("20261202-003637/", "gc", "gc-poll"), _section(variants.gc_md)),
    "hold-lean": (_under("20261203-lean/", "hold-50k", "hold-50k-long", "hold-50k-long-180s"),
                  holds_md),
    "loadgen": (_under("20261203-loadgen/", "python", "compiled"), loadgen_md),
    "loadgen-loop": (_under("20261207-pump/", "compiled1", "uvloop1", "compiled2", "uvloop2"),
                     loadgen_md),
    "knees-loadgen": (_under("20261203-loadgen/", "knee-grpcio", "knee-h2"), knees_md),
    "faults": (_under("faults", "", "-restart", "-kill"), lambda r: faults_markdown(r.faults)),
    "lb-matrix": (LB_FAULTS, lb_matrix_md),
    "lb-verdicts": (LB_FAULTS, verdicts_md),
    "lb-hops": (_under("20261203-lb-lb/", "one-server", "hops-lb", "hops-lb-redis",
                       "hops-lb-nodelay-off"),
                lambda r: _lines(behind_lb.hops_md(r.bench, r.through)[5:])),
    "proxies": (PROXIES, lambda r: _table(proxies.markdown(r.through))),
    "proxies-idle": (_under(f"{PROXY_RUN}/", "idle-nginx-documented", "idle-nginx-defaults"),
                     lb_matrix_md),
    "proxies-verdicts": (PROXIES + _under(f"{PROXY_RUN}/", "idle-nginx-documented",
                                          "idle-nginx-defaults"), verdicts_md),
    "edge-faults": (_under(EDGE, "faults-nginx-documented", "faults-nginx-defaults"),
                    lb_detail_md),
    "edge-faults-first": (_under("20261207-edge-first/", "faults-nginx-documented"),
                          lb_detail_md),
    "edge-idle": (_under(EDGE, "idle60-nginx-documented", "idle60-nginx-defaults"),
                  reconnects_md),
    "stop": (STOP, lambda r: _table(stop.markdown(r.docs))),
    "stop-verdicts": (STOP, verdicts_md),
    "browser-limit": (_under(BROWSER, "tabs", "react"),
                      lambda r: _table(browsers.limit_md(r.browser))),
    "browser-faults": (_under(BROWSER, "faults"), lambda r: _table(browsers.faults_md(r.browser))),
    "browser-cpu": (_under(BROWSER, "cpu"), lambda r: _table(browsers.rows_md(r.browser))),
    "browser-verdicts": (_under(BROWSER, "tabs", "faults", "cpu"), verdicts_md),
}  # fmt: skip


def block(name: str) -> str:
    """A block as it stands in a file: its markers, its text, the runs it read."""
    paths, make = EXCERPTS[name]
    return (f"<!-- generated: {name} (make readme: python -m bench.report.excerpt {name}) -->\n"
            f"{make(runs(paths))}\n\n{provenance(paths)}\n<!-- end: {name} -->")  # fmt: skip


def regenerate(text: str) -> str:
    """``text`` with every generated block made again from its runs."""
    return BLOCK.sub(lambda m: block(m.group(1)), text)


def main(argv: list[str]) -> int:
    if argv and argv[0] != "--check":
        print("\n\n".join(block(n) for n in argv))
        return 0
    stale = []
    for name in FILES:
        path = ROOT / name
        old = path.read_text()
        new = regenerate(old)
        if new != old:
            stale.append(name)
            if not argv:
                path.write_text(new)
    print(("differ from their runs: " if argv else "rewrote: ") + (", ".join(stale) or "none"))
    return 1 if stale and argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
