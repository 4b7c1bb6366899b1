"""The results document's records, typed (docs/results-schema.md is their prose).

One ``Document`` per run: ``kind`` bench, faults or browser. Figures that were not measured are
``None`` (null in JSON), never 0. The validator (bench.results.load) checks the keys each
record here requires, so these types are the schema's one definition. Records that grew fields
over time keep the newer fields optional (``NotRequired``): an older document upgraded by
``bench.results.load.upgrade`` reads the same way.
"""

from typing import Any, NotRequired, TypedDict

SCHEMA_VERSION = 2  # 2: fault entries' lost split into lost (gaps) and unread (docs/...)
PERCENTILES = ("p50", "p90", "p99", "p999", "max")
ERROR_CLASSES = ("connect", "read", "timeout", "status")  # wrk's error classes of a step
# The fault scenarios on one server, in report order (bench.faults.scenarios defines them).
FAULT_SCENARIOS = ("close", "reset", "blackhole", "reconnect-storm", "truncate", "latency",
                   "slow-reader", "restart", "kill")  # fmt: skip
# The fault scenarios behind the load balancer (bench.faults.behind_lb defines them).
LB_SCENARIOS = ("backend-kill", "rolling-deploy", "idle-timeout", "idle-timeout-silent",
                "redis-restart")  # fmt: skip


class Percentiles(TypedDict):
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    count: NotRequired[int]


class Git(TypedDict):
    commit: str | None
    dirty: bool | None  # any change under the code's paths, untracked files too


class Machine(TypedDict):
    cpu_model: str
    cores: int | None
    memory_bytes: int | None
    kernel: str
    python: str
    packages: dict[str, str | None]  # every distribution tokenbench declares or pulls in
    git: Git
    date: str
    command: str
    hostname: NotRequired[str]
    os: NotRequired[str]
    arch: NotRequired[str]
    open_files_limit: NotRequired[int]  # the hard limit
    open_files_soft: NotRequired[int]  # the soft one, raised to the hard one at start
    ephemeral_ports: NotRequired[str]
    yardstick: NotRequired[dict[str, Any] | None]


class Server(TypedDict):
    cpu_s_per_1k_tokens: float | None
    rss_bytes: int | None
    mem_per_conn_bytes: float | None
    open_files: int | None
    connections: NotRequired[int | None]
    cpu_util: NotRequired[float | None]
    cpu_over_cores: NotRequired[bool | None]
    gc: NotRequired[dict[str, Any] | None]


class Loadgen(TypedDict):
    cpu_us_per_token: float | None
    saturated: NotRequired[bool]


class Slo(TypedDict):
    held: bool
    p99_ms: NotRequired[float]
    ttft_p99_ms: NotRequired[float]
    min_goodput: NotRequired[float]
    ttft_checked: NotRequired[bool]


class Step(TypedDict):
    clients: int
    latency_ms: Percentiles
    ttft_ms: Percentiles
    gap_p99_ms: float
    tokens_per_s: float
    goodput: float | None
    requests_per_s: float
    wire_bytes_per_token: float | None
    errors: dict[str, int]
    reconnects: int
    lost: int
    duplicated: int
    out_of_order: int
    server: Server
    loadgen: Loadgen
    slo: NotRequired[Slo]
    limited_by: NotRequired[str | None]
    window_s: NotRequired[float]
    windows: NotRequired[list[dict[str, Any]]]
    unread: NotRequired[int | None]
    emptied: NotRequired[dict[str, Any]]  # a knee step: how its users were ended (took_s, empty)


class Knee(TypedDict):
    clients: int
    clients_per_server_core: float
    broke_at: int | None
    limited_by: str | None
    tokens_per_s: NotRequired[float]
    held_runs: NotRequired[list[int]]
    broke_runs: NotRequired[list[int]]
    server_cores: NotRequired[int]
    settled: NotRequired[bool]
    cut: NotRequired[bool]  # --knee-budget stopped the search before it ended
    target_ratio: NotRequired[float | None]
    runs: NotRequired[list[list[int]]]
    fit: NotRequired[dict[str, float] | None]


class Run(TypedDict):
    transport: str
    steps: list[Step]
    knee: NotRequired[Knee | None]
    stack: NotRequired[str]
    gc: NotRequired[str]
    flush_ms: NotRequired[float]
    escaped_threads: NotRequired[int | None]
    topology: NotRequired[dict[str, Any] | None]  # the deployment in front (bench --lb)
    # A stream read end to end before any load (bench.load.run.stream_check); False: none got
    # through, ``why`` says what the client saw, and ``steps`` is empty (nothing measured).
    works: NotRequired[bool]
    why: NotRequired[str | None]


class Phase(TypedDict):
    p50: float | None
    max: float | None
    values: list[float]


class FaultEntry(TypedDict):
    scenario: str
    transport: str
    mode: str
    clients: int
    detection_ms: Phase
    reconnect_ms: Phase
    catchup_ms: Phase
    lost: int  # gaps below the highest seq a client saw
    duplicated: int
    unrecovered: int
    passed: bool
    unread: NotRequired[int | None]  # owed by the window's end, never delivered
    max_stall_ms: NotRequired[float | None]
    reconnects: NotRequired[int]
    retry_ms: NotRequired[int]
    user_saw: NotRequired[str]
    topology: NotRequired[dict[str, Any]]


class Document(TypedDict):
    schema_version: int
    kind: NotRequired[str]  # bench, faults or browser
    run_id: NotRequired[str]
    machine: Machine
    config: dict[str, Any]
    runs: list[Run]
    faults: NotRequired[list[FaultEntry]]
    browser: NotRequired[list[dict[str, Any]]]


def required(record: type) -> tuple[str, ...]:
    """The keys a record type requires, in declaration order."""
    keys: frozenset[str] = getattr(record, "__required_keys__", frozenset())
    return tuple(k for k in record.__annotations__ if k in keys)
