"""The wire contract end to end: four real servers (two workers each), real clients.

Outside clients check the wire independently of tokenbench's own clients: aiohttp for HTTP and
SSE, the ``websockets`` library for WebSocket, raw generated stubs for gRPC.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import aiohttp
import grpc
import pytest
import websockets
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import connect as ws_connect

from clients import StreamError, create_stream, reader_class, stream
from proto import tokens_pb2 as pb
from proto import tokens_pb2_grpc as pb_grpc
from servers.base import ServerConfig
from servers.tokens.core import Codec
from tests.conftest import HTTP_TRANSPORTS, STACKS, TRANSPORTS, ServerHandle

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both server stacks."""
    return request.param


async def read_all(transport: str, srv: ServerHandle, sid: str, after: int | None = None) -> list:
    return [t async for t in stream(transport, srv.url, sid, after=after)]


async def test_four_transports_deliver_identical_streams(servers: dict[str, ServerHandle]) -> None:
    info = await create_stream("sse", servers["sse"].url, tokens=400, rate=1000)
    expected = Codec().decode(info["id"])
    seen = {}
    for transport in servers:  # every transport that has the module's stack
        tokens = await read_all(transport, servers[transport], info["id"])
        seen[transport] = [(t.seq, t.text) for t in tokens]
        assert [t.t for t in tokens] == [expected.due_ns(s) for s in range(400)]
    reference = [(s, expected.text(s)) for s in range(400)]
    for transport in servers:
        assert seen[transport] == reference, transport
    texts = [text for _, text in reference]
    assert sum(any(ord(c) > 127 for c in x) for x in texts) >= 20
    assert sum("\n" in x for x in texts) >= 8


def test_every_listener_keeps_the_configured_backlog(servers: dict[str, ServerHandle]) -> None:
    # asyncio's create_server and uvicorn listen() again, at their own defaults (100, 2048),
    # unless told: a burst of arrivals then lost SYNs and waited seconds in retransmits.
    # ss reports a listener's backlog as its Send-Q; the kernel caps it at somaxconn.
    with open("/proc/sys/net/core/somaxconn") as f:
        want = min(ServerConfig("sse").backlog, int(f.read()))
    for transport, srv in servers.items():
        out = subprocess.run(["ss", "-ltnH", f"sport = :{srv.port}"], capture_output=True,
                             text=True, check=True).stdout.split("\n")  # fmt: skip
        backlogs = {int(line.split()[2]) for line in out if line.strip()}
        assert backlogs == {want}, f"{transport}: listen backlogs {backlogs}, not {want}"


async def test_stream_created_on_one_transport_is_served_by_another(
    servers: dict[str, ServerHandle],
) -> None:
    over_grpc = await create_stream("grpc", servers["grpc"].url, tokens=30, rate=1000)
    over_http = await create_stream("poll", servers["poll"].url, tokens=30, rate=1000)
    assert [t.seq for t in await read_all("sse", servers["sse"], over_grpc["id"])] == list(
        range(30)
    )
    assert [t.seq for t in await read_all("grpc", servers["grpc"], over_http["id"])] == list(
        range(30)
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_worker_serves_any_stream(
    servers: dict[str, ServerHandle], transport: str
) -> None:
    srv = servers[transport]
    info = await create_stream(transport, srv.url, tokens=5, rate=1000)
    before = [row["requests_total"] for row in srv.rows()]
    for _ in range(24):
        assert len(await read_all(transport, srv, info["id"])) == 5
    served = [row["requests_total"] - b for row, b in zip(srv.rows(), before, strict=True)]
    assert all(n > 0 for n in served), served


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_resume_after_k_gives_k_plus_one_onward(
    servers: dict[str, ServerHandle], transport: str
) -> None:
    srv = servers[transport]
    info = await create_stream(transport, srv.url, tokens=200, rate=1000)
    for k in (-1, 0, 57, 198):
        tokens = await read_all(transport, srv, info["id"], after=k)
        assert [t.seq for t in tokens] == list(range(k + 1, 200)), k


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_late_join_gets_the_backlog_at_once_then_live(
    servers: dict[str, ServerHandle], transport: str
) -> None:
    srv = servers[transport]
    info = await create_stream(transport, srv.url, tokens=60, rate=50)
    await asyncio.sleep(0.6)  # ~30 tokens are due before anyone reads
    start = time.time_ns()
    arrivals: list[tuple[int, int, int]] = []
    async for tok in stream(transport, srv.url, info["id"]):
        arrivals.append((tok.seq, tok.t, time.time_ns()))
    assert [a[0] for a in arrivals] == list(range(60))
    backlog = [a for a in arrivals if a[1] <= start]
    assert len(backlog) >= 25
    assert max(a[2] for a in backlog) - start < 300_000_000  # all of it within 0.3 s
    for seq, due, received in arrivals:
        assert received >= due, f"token {seq} arrived before it was due"


async def test_sse_wire_format_and_end(servers: dict[str, ServerHandle]) -> None:
    srv = servers["sse"]
    info = await create_stream("sse", srv.url, tokens=3, rate=1000)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/v1/streams/{info['id']}/sse") as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            body = (await r.read()).decode()
        assert body.startswith("retry: 100\n")
        events = [e for e in body.split("\n\n") if e]
        assert events[1].startswith("id: 0\ndata: {")
        assert events[-1] == 'event: end\ndata: {"tokens":3}'
        headers = {"Last-Event-ID": "2"}
        async with http.get(f"{srv.url}/v1/streams/{info['id']}/sse", headers=headers) as r:
            assert r.status == 204
        # The header wins over the query parameter.
        url = f"{srv.url}/v1/streams/{info['id']}/sse?last_event_id=0"
        async with http.get(url, headers={"Last-Event-ID": "1"}) as r:
            assert "id: 2\n" in (await r.read()).decode()
            assert "id: 1\n" not in (await r.read()).decode()


async def test_websocket_end_message_and_close_1000(servers: dict[str, ServerHandle]) -> None:
    srv = servers["ws"]
    info = await create_stream("ws", srv.url, tokens=4, rate=1000)
    url = srv.url.replace("http", "ws") + f"/v1/streams/{info['id']}/ws?after=0"
    async with ws_connect(url, compression=None) as ws:
        messages = [json.loads(m) async for m in ws]
        assert ws.close_code == 1000
    assert [m["seq"] for m in messages[:-1]] == [1, 2, 3]
    assert messages[-1] == {"end": True, "tokens": 4}


async def test_grpc_ends_with_ok_and_serves_health(servers: dict[str, ServerHandle]) -> None:
    srv = servers["grpc"]
    target = f"127.0.0.1:{srv.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.TokenStreamStub(channel)
        created = await stub.CreateStream(pb.CreateStreamRequest())
        assert (created.tokens, created.rate) == (400, 40.0)
        small = await stub.CreateStream(pb.CreateStreamRequest(tokens=3, rate=1000))
        call = stub.StreamTokens(pb.StreamRequest(id=small.id))
        assert [t.seq async for t in call] == [0, 1, 2]
        assert await call.code() == grpc.StatusCode.OK
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_poll_end_flags(servers: dict[str, ServerHandle]) -> None:
    srv = servers["poll"]
    info = await create_stream("poll", srv.url, tokens=3, rate=1000)
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http:
        base = f"{srv.url}/v1/streams/{info['id']}/poll"
        async with http.get(f"{base}?after=0") as r:
            doc = await r.json()
        assert [t["seq"] for t in doc["tokens"]] == [1, 2] and doc["end"] is True
        start = time.monotonic()
        async with http.get(f"{base}?after=2&timeout=10") as r:
            assert await r.json() == {"tokens": [], "end": True}
        assert time.monotonic() - start < 5  # at once: not after its 10 s wait
        slow = await create_stream("poll", srv.url, tokens=3, rate=0.1)  # next token in 10 s
        start = time.monotonic()
        url = f"{srv.url}/v1/streams/{slow['id']}/poll?after=0&timeout=0.3"
        async with http.get(url) as r:
            assert await r.json() == {"tokens": [], "end": False}  # it did not wait for seq 1
        assert time.monotonic() - start >= 0.3  # and never answers before its timeout


# --- the error table ---------------------------------------------------------------------------


def expired_id() -> str:
    sid, _ = Codec().new_stream(5, 10.0, time.time_ns() - 3600 * 10**9)
    return sid


READ_PATH = {"sse": "sse", "ws": "ws", "poll": "poll"}
WS_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_http_read_errors(servers: dict[str, ServerHandle], transport: str) -> None:
    srv = servers[transport]
    info = await create_stream(transport, srv.url, tokens=10, rate=1000)
    param = "last_event_id" if transport == "sse" else "after"
    cases = [
        ("bogus", "", 404, None),
        ("not%20base64%21", "", 404, None),
        (expired_id(), "", 410, None),
        (info["id"], f"?{param}=10", 422, param),
        (info["id"], f"?{param}=-2", 422, param),
        (info["id"], f"?{param}=abc", 422, param),
    ]
    if transport == "poll":
        cases += [
            (info["id"], "?timeout=61", 422, "timeout"),
            (info["id"], "?timeout=x", 422, "timeout"),
        ]
    async with aiohttp.ClientSession() as http:
        for sid, query, status, field in cases:
            url = f"{srv.url}/v1/streams/{sid}/{READ_PATH[transport]}{query}"
            headers = WS_UPGRADE if transport == "ws" else {}
            async with http.get(url, headers=headers) as r:
                assert r.status == status, (sid, query)
                doc = await r.json(content_type=None)
                assert doc["error"]
                assert doc.get("field") == field


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_our_clients_raise_clear_errors_without_retrying(
    servers: dict[str, ServerHandle], transport: str
) -> None:
    srv = servers[transport]
    info = await create_stream(transport, srv.url, tokens=10, rate=1000)
    for sid, after, status in (("bogus", None, 404), (expired_id(), None, 410),
                               (info["id"], 10, 422)):  # fmt: skip
        reader = reader_class(transport)(srv.url, sid, lambda *a: None, after)
        with pytest.raises(StreamError) as err:
            await reader.run()
        assert err.value.status == status
        assert (reader.stats.attempts, reader.stats.reconnects) == (1, 0)  # no retry


async def test_websocket_refusal_is_a_real_http_answer(servers: dict[str, ServerHandle]) -> None:
    url = servers["ws"].url.replace("http", "ws") + "/v1/streams/bogus/ws"
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        async with ws_connect(url):
            pass
    assert err.value.response.status_code == 404
    assert json.loads(err.value.response.body)["error"]


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_prompt_post_errors(servers: dict[str, ServerHandle], transport: str) -> None:
    url = f"{servers[transport].url}/v1/streams"
    cases = [
        (b'{"tokens": "5"}', 422, "tokens"),
        (b'{"rate": "40"}', 422, "rate"),
        (b'{"tokens": 100001}', 422, "tokens"),
        (b'{"rate": 0}', 422, "rate"),
        (b'{"rate": NaN}', 422, "body"),
        (b'{"prompt": "' + b"a" * 4097 + b'"}', 422, "prompt"),
        (b"{bad json", 422, "body"),
        (b"[1, 2]", 422, "body"),
        (b"[" * 3000, 422, "body"),  # nested past the JSON parser's depth
        (b"\xff\xfe", 422, "body"),
        (b'{"prompt": "' + b"a" * 70_000 + b'"}', 413, "body"),
    ]
    # A new connection per request: a server may close one after refusing a body it did not
    # read (the 413; RFC 9110 section 15.5.14), and granian does, racing aiohttp's keep-alive.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for body, status, field in cases:
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                assert r.status == status, body[:40]
                doc = await r.json(content_type=None)
                assert doc["error"] and doc["field"] == field
        async with http.post(url, data=b"") as r:  # no body: all defaults, as curl -X POST
            assert r.status == 201
            doc = await r.json()
            assert (doc["tokens"], doc["rate"]) == (400, 40.0) and doc["id"]
        async with http.get(url.replace("/v1/streams", "/nothing")) as r:
            assert r.status == 404 and (await r.json())["error"]


async def test_grpc_errors(servers: dict[str, ServerHandle]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{servers['grpc'].port}") as channel:
        stub = pb_grpc.TokenStreamStub(channel)
        small = await stub.CreateStream(pb.CreateStreamRequest(tokens=5, rate=1000))
        bad_reads = [
            (pb.StreamRequest(id="bogus"), grpc.StatusCode.NOT_FOUND),
            (pb.StreamRequest(id=expired_id()), grpc.StatusCode.NOT_FOUND),
            (pb.StreamRequest(id=small.id, after=5), grpc.StatusCode.INVALID_ARGUMENT),
            (pb.StreamRequest(id=small.id, after=-2), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for request, code in bad_reads:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [t async for t in stub.StreamTokens(request)]
            assert err.value.code() == code
        bad_creates = [
            pb.CreateStreamRequest(tokens=100001),
            pb.CreateStreamRequest(tokens=-3),
            pb.CreateStreamRequest(rate=1000.5),
            pb.CreateStreamRequest(rate=-1),
            pb.CreateStreamRequest(prompt="é" * 2049),
            pb.CreateStreamRequest(prompt="a" * 70_000),
        ]
        for request in bad_creates:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateStream(request)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_health_and_metrics(servers: dict[str, ServerHandle], transport: str) -> None:
    srv = servers[transport]
    status, _ = srv.get("/healthz")
    assert status == 200
    status, body = srv.get("/metrics")
    text = body.decode()
    assert status == 200
    for name in ("connections_open", "tokens_sent_total", "resumes_total", "errors_total"):
        assert f"\ntokenbench_{name}{{" in "\n" + text, name
    assert "# TYPE tokenbench_tokens_sent_total counter" in text
