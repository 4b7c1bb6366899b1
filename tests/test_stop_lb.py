"""The stop button with a model behind the backends (``--source llm``): the producer stops
generating and the log carries the end. Behind HAProxy with the shared log, a stop sent to
another backend than the one streaming ends the stream; with answers held per pod it is
refused there, as a read is (docs/protocol.md, "Stop")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clients import StreamError, create_stream, reader_class
from tests.conftest import TRANSPORTS
from tests.test_topology import deployment, start, started  # noqa: F401 (a fixture)

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stop_on_another_backend_ends_the_stream_from_the_shared_log(
    transport: str,
    tmp_path: Path,
    started: list,  # noqa: F811
) -> None:
    topo = start(started, deployment(tmp_path, transport, "redis", backends=2))
    one, other = (b.url for b in topo.backends)

    async def main() -> tuple[list[int], int | None, int, int]:
        info = await create_stream(transport, topo.url, tokens=400, rate=40)
        seen: list[int] = []
        reader = reader_class(transport)(one, info["id"], lambda s, t, x: seen.append(s))
        task = asyncio.ensure_future(reader.run())
        while len(seen) < 5:
            await asyncio.sleep(0.01)
        pressed = time.time_ns()
        stopper = reader_class(transport)(other, info["id"], lambda s, t, x: None)
        await stopper.stop()
        await asyncio.wait_for(task, 10)
        resumed: list[int] = []
        late = reader_class(transport)(other, info["id"], lambda s, t, x: resumed.append(s),
                                       after=seen[-1])  # fmt: skip
        await asyncio.wait_for(late.run(), 10)
        assert resumed == []  # the end, never more tokens
        return seen, reader.stopped_ns, pressed, len(seen)

    seen, stopped_ns, pressed, final = asyncio.run(main())
    assert seen == list(range(final)) and 5 <= final < 400
    assert stopped_ns is not None and stopped_ns >= pressed


@pytest.mark.parametrize("transport", ["sse", "grpc"])
def test_pod_replay_refuses_a_stop_on_the_other_pod_and_stops_on_its_own(
    transport: str,
    tmp_path: Path,
    started: list,  # noqa: F811
) -> None:
    topo = start(started, deployment(tmp_path, transport, "pod", backends=2))
    one, other = (b.url for b in topo.backends)

    async def main() -> tuple[list[int], int | None]:
        info = await create_stream(transport, one, tokens=400, rate=40)
        seen: list[int] = []
        reader = reader_class(transport)(one, info["id"], lambda s, t, x: seen.append(s))
        task = asyncio.ensure_future(reader.run())
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        with pytest.raises(StreamError) as refused:
            await reader_class(transport)(other, info["id"], lambda s, t, x: None).stop()
        assert "not held by this backend" in refused.value.message
        await reader.stop()
        await asyncio.wait_for(task, 10)
        return seen, reader.stopped_ns

    seen, stopped_ns = asyncio.run(main())
    assert seen == list(range(len(seen))) and len(seen) < 400 and stopped_ns
