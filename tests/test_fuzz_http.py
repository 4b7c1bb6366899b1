"""Bad input at the servers themselves: schemathesis on the HTTP API, garbage bytes at every port.

- Every HTTP server's own OpenAPI document (``/openapi.json``, servers/http/openapi.py) drives
  schemathesis, valid and invalid requests alike: every answer must be one the document lists
  (status, content type, body schema), never a 5xx, and the server's log must hold no traceback.
- Random bytes, HTTP-looking junk and broken WebSocket upgrades and HTTP/2 prefaces at every
  listening port leave every server serving streams, exactly, afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clients import create_stream, stream
from servers.tokens.core import Codec
from tests.conftest import HTTP_TRANSPORTS, STACKS, ServerHandle

pytestmark = pytest.mark.timeout(180)
BUDGET = settings().max_examples  # the hypothesis profile's: small in make test, large in fuzz
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]  # fmt: skip


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both server stacks."""
    return request.param


def _with_live_examples(doc: dict, sid: str) -> dict:
    """Give every ``sid`` a real stream as its example, so reads are exercised past the 404."""
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] == "sid":
                    param["schema"] = {"type": "string", "examples": [sid, "nope"]}
    return doc


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_every_answer_is_one_the_openapi_document_lists(
    servers: dict[str, ServerHandle], transport: str
) -> None:
    srv = servers[transport]  # the module's shared server: its log holds every test's lines
    with urllib.request.urlopen(srv.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    # (a WebSocket server documents its shared routes only: OpenAPI has no upgrades)
    # All due and short: no read of it waits (a poll only waits when nothing is due).
    sid = (await create_stream(transport, srv.url, tokens=3, rate=1000))["id"]
    await asyncio.sleep(0.05)
    schema = schemathesis.openapi.from_dict(_with_live_examples(doc, sid))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            check = _check(operation, mode, srv.url)
            await asyncio.to_thread(_collect, check, failures, operation.label, mode)
    assert not failures, "\n".join(failures)
    assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]


def _check(operation, mode: GenerationMode, url: str):  # type: ignore[no-untyped-def]
    @settings(suppress_health_check=list(HealthCheck), max_examples=BUDGET // 3)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=url, checks=CHECKS, timeout=15)

    return check


def _collect(check, failures: list[str], label: str, mode: GenerationMode) -> None:  # type: ignore[no-untyped-def]
    try:
        check()
    except Unsatisfiable:
        pass  # no parameters, no body: there is no invalid request to make
    except Exception as exc:  # a schemathesis failure group: keep its text, go on
        failures.append(f"{label} ({mode.value}): {exc}"[:2000])


def _garbage(port: int, rng: random.Random) -> None:
    """One connection's worth of something that is not our protocol, then gone."""
    kind = rng.choice(["random", "http-junk", "ws-broken", "h2-broken", "half", "huge-head"])
    payload = {
        "random": lambda: rng.randbytes(rng.randint(1, 4096)),
        "http-junk": lambda: b"GET /v1/streams/\x00\xff/sse HTTP/1.1\r\nHost: x\r\n"
        + rng.randbytes(64) + b"\r\n\r\n",
        "ws-broken": lambda: b"GET /v1/streams/x/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ???\r\n\r\n"
        + rng.randbytes(100),
        "h2-broken": lambda: H2_PREFACE + rng.randbytes(rng.randint(0, 300)),
        "half": lambda: b"POST /v1/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"to",
        "huge-head": lambda: b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    }[kind]()  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            sock.settimeout(0.2)
            sock.recv(4096)
        except OSError:
            pass  # refused, reset or silent: all fine, as long as the server stays up


async def test_garbage_at_every_port_leaves_every_server_serving(
    servers: dict[str, ServerHandle],
) -> None:
    rng = random.Random(2026)
    for _ in range(BUDGET // 6):
        for name in servers:  # every transport that has the module's stack
            await asyncio.to_thread(_garbage, servers[name].port, rng)
    for name in servers:
        srv = servers[name]
        assert all(_alive(pid) for pid in srv.pids), f"{name}: a worker died"
        info = await create_stream(name, srv.url, tokens=30, rate=1000)
        expected = Codec().decode(info["id"])
        got = [(t.seq, t.text) async for t in stream(name, srv.url, info["id"])]
        assert got == [(s, expected.text(s)) for s in range(30)], name
        log = srv.stderr()
        if "Traceback" in log:
            at = log.index("Traceback")
            pytest.fail(f"{name} logged a traceback:\n{log[max(0, at - 500) : at + 4000]}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
