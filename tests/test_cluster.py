"""Load from a Ray cluster (bench.load.cluster): several simulated nodes on this machine
(``ray.cluster_utils.Cluster``), the real CLI, the same results.json as local loaders."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the [cluster] extra: pip install -e '.[cluster]'")
from ray.cluster_utils import Cluster  # noqa: E402


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a second node, one CPU each: two load processes land on two nodes."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


def test_a_small_bench_runs_through_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _cli(
        "bench", "--transport", "sse,grpc", "--clients", "40", "--loaders", "2", "--ramp", "2s",
        "--hold", "3", "--windows", "1", "--quiet", "--no-yardstick",
        "--cluster", cluster.address, "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["cluster"]["nodes"]) == 2
    for run in doc["runs"]:
        step = run["steps"][0]
        assert step["tokens"] > 1000 and step["lost"] == 0 and step["goodput"] > 0.9, run
        # one load process per node, each on the server's clock
        assert len({n["node_id"] for n in run["load_nodes"]}) == 2
        assert all(n["nice"] == 0 for n in run["load_nodes"])  # not Ray's worker niceness
        assert len(run["clocks"]) == 2 and all(c["synced"] for c in run["clocks"])
        assert run["clock"]["warning"] is None


def test_a_fault_run_reads_its_clients_from_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "faults"
    r = _cli(
        "faults", "--transport", "sse", "--scenario", "close", "--mode", "hardened",
        "--clients", "2", "--tokens", "160", "--window", "15", "--cluster", cluster.address,
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (entry,) = json.loads((out / "results.json").read_text())["faults"]
    assert entry["passed"] and entry["lost"] == 0 and entry["clock"]["synced"], entry


def test_without_ray_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    for cmd in (["bench", "--transport", "sse"], ["faults", "--transport", "sse"]):
        r = _cli(*cmd, "--cluster", "auto", "--out", str(tmp_path / "x"), env=env, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("error: --cluster needs Ray") and "pip install" in line


def test_an_address_where_nothing_answers_fails_at_once(tmp_path: Path) -> None:
    r = _cli("bench", "--transport", "sse", "--cluster", "127.0.0.1:9", "--out", str(tmp_path),
             timeout=60)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --cluster 127.0.0.1:9: no Ray")
    r = _cli("bench", "--transport", "sse", "--cluster", "nonsense", "--out", str(tmp_path),
             timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not auto, local, host:port" in r.stderr
