"""The browser-facing parts of the servers, without a browser: the gRPC-Web front of the gRPC
process (PROTOCOL-WEB.md), SSE's ``?ping=1``, the bundle routes, and ``tokenbench browser``'s
one-line errors. Real servers on free ports, ended by the fixtures."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from proto import tokens_pb2 as pb
from servers.base import ServerConfig
from servers.process.supervisor import Supervisor
from servers.tokens.core import Codec


@pytest.fixture(scope="module")
def grpc_web() -> Iterator[Supervisor]:
    sup = Supervisor(ServerConfig("grpc", port=0, web_port=0))
    sup.start()
    yield sup
    sup.stop()


def call(base: str, method: str, message: bytes, ctype: str = "application/grpc-web+proto"):
    body = struct.pack(">BI", 0, len(message)) + message
    if "text" in ctype:
        body = base64.b64encode(body)
    req = urllib.request.Request(f"{base}/tokenbench.v1.TokenStream/{method}", data=body,
                                 headers={"content-type": ctype})  # fmt: skip
    with urllib.request.urlopen(req, timeout=20) as r:
        raw = r.read()
        return dict(r.headers), unbase64(raw) if "text" in ctype else raw


def unbase64(raw: bytes) -> bytes:
    """Text mode's body: base64 per write, each padded (PROTOCOL-WEB.md), so decode it in
    4-character groups, each standing alone."""
    return b"".join(base64.b64decode(raw[i : i + 4]) for i in range(0, len(raw), 4))


def frames(raw: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(raw):
        flag, n = struct.unpack(">BI", raw[i : i + 5])
        out.append((flag, raw[i + 5 : i + 5 + n]))
        i += 5 + n
    assert i == len(raw), "a frame runs past the body"
    return out


def create(base: str, tokens: int = 6, rate: float = 200.0) -> str:
    _, raw = call(base, "CreateStream", pb.CreateStreamRequest(tokens=tokens, rate=rate)
                  .SerializeToString())  # fmt: skip
    ((flag, msg), (tflag, trailer)) = frames(raw)
    assert flag == 0 and tflag == 0x80 and b"grpc-status: 0" in trailer
    return pb.CreateStreamResponse.FromString(msg).id


@pytest.mark.parametrize("ctype", ["application/grpc-web+proto", "application/grpc-web-text"])
def test_grpc_web_streams_every_token_after_the_cursor_then_ok(grpc_web, ctype) -> None:
    sid = create(grpc_web.web_url)
    headers, raw = call(grpc_web.web_url, "StreamTokens",
                        pb.StreamRequest(id=sid, after=1).SerializeToString(), ctype)  # fmt: skip
    got = frames(raw)
    tokens = [pb.Token.FromString(m) for f, m in got if f == 0 and m]
    stream = Codec().decode(sid)
    assert [t.seq for t in tokens] == [2, 3, 4, 5]
    assert all(t.text == stream.text(t.seq) and t.t == stream.due_ns(t.seq) for t in tokens)
    assert got[-1][0] == 0x80 and b"grpc-status: 0\r\n" in got[-1][1]
    assert headers["content-type"].startswith(ctype.split("+")[0])


def test_grpc_web_errors_are_trailers_only_with_the_grpc_code(grpc_web) -> None:
    headers, raw = call(grpc_web.web_url, "StreamTokens",
                        pb.StreamRequest(id="x" * 50).SerializeToString())  # fmt: skip
    assert headers["grpc-status"] == "5" and raw == b""  # NOT_FOUND
    headers, _ = call(grpc_web.web_url, "Nope", b"")
    assert headers["grpc-status"] == "12"  # UNIMPLEMENTED
    headers, _ = call(grpc_web.web_url, "StreamTokens", b"\xff\xff", "application/grpc-web")
    assert headers["grpc-status"] == "3"  # INVALID_ARGUMENT: does not decode
    big = pb.CreateStreamRequest(prompt="x" * 70_000).SerializeToString()
    for ctype in ("application/grpc-web", "application/grpc-web-text"):
        headers, _ = call(grpc_web.web_url, "CreateStream", big, ctype)
        assert headers["grpc-status"] == "8"  # RESOURCE_EXHAUSTED: over 64 KiB while reading
    ok = pb.CreateStreamRequest(prompt="x" * 4000).SerializeToString()  # in the limit, base64 too
    headers, _ = call(grpc_web.web_url, "CreateStream", ok, "application/grpc-web-text")
    assert "grpc-status" not in headers
    req = urllib.request.Request(
        f"{grpc_web.web_url}/tokenbench.v1.TokenStream/StreamTokens",
        data=b"{}",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["grpc-status"] == "3"


def test_the_same_stream_reads_over_native_grpc_and_grpc_web(grpc_web) -> None:
    import grpc

    from proto import tokens_pb2_grpc as pb_grpc

    sid = create(grpc_web.web_url, tokens=4)
    host = grpc_web.url.split("//", 1)[1]
    with grpc.insecure_channel(host) as channel:
        seqs = [
            t.seq for t in pb_grpc.TokenStreamStub(channel).StreamTokens(pb.StreamRequest(id=sid))
        ]
    assert seqs == [0, 1, 2, 3]


def test_sse_ping_query_sends_named_ping_events_when_idle() -> None:
    from servers.sse.stock import EventStream

    assert EventStream(1000, ping=True).heartbeat() == b"event: ping\ndata: {}\n\n"
    assert EventStream(1000).heartbeat().startswith(b":")  # the contract's comment by default
    sup = Supervisor(ServerConfig("sse", port=0, heartbeat=0.3))
    sup.start()
    try:
        req = urllib.request.Request(f"{sup.url}/v1/streams", data=b'{"tokens": 2, "rate": 1}',
                                     headers={"content-type": "application/json"})  # fmt: skip
        import json

        sid = json.load(urllib.request.urlopen(req, timeout=10))["id"]
        with urllib.request.urlopen(f"{sup.url}/v1/streams/{sid}/sse?ping=1", timeout=10) as r:
            body = r.read()  # 2 tokens over 1 s, idle gaps of 1 s > heartbeat 0.3 s
        assert b"event: ping\ndata: {}\n\n" in body and b"event: end" in body
    finally:
        sup.stop()


def test_the_bundle_routes_answer_files_and_refuse_paths(grpc_web) -> None:
    from servers.http import web

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(grpc_web.web_url + path, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status("/web/..%2Fpyproject.toml") == 404
    assert status("/web/.hidden") == 404
    if web.built():
        assert status("/web/bench.html") == 200 and status("/demo") == 200  # 307 to the page


@pytest.mark.parametrize(("args", "says"), [
    (["--tabs", "0"], "--tabs: each 1..20"),
    (["--tabs", "x"], "whole numbers"),
    (["--http", "3"], "--http: 1.1, 2"),
    (["--fault", "close", "--http", "2"], "faults run over HTTP/1.1 only"),
    (["--fault", "nope"], "--fault: none, close"),
    (["--client", "carrier-pigeon"], "--client:"),
    (["--page", "vue"], "--page: plain or react"),
    (["--fault", "close", "--tokens", "40"], "at least 4 s"),
])  # fmt: skip
def test_browser_command_errors_are_one_line(args: list[str], says: str) -> None:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "bench.cli", "browser", *args],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in out.stderr
    assert time.monotonic() - started < 60
