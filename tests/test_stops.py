"""The derived streams' stop table shared by a server's workers (servers/source/stops.py)."""

from __future__ import annotations

from pathlib import Path

from servers.source import stops
from servers.tokens.core import Stream


class Seen:
    def __init__(self) -> None:
        self.at: list[int] = []

    def stop(self, stopped_ns: int) -> None:
        self.at.append(stopped_ns)


def pair(tmp_path: Path) -> tuple[stops.Stops, stops.Stops]:
    path = tmp_path / "table.stops"
    stops.create_table(path, 2)
    return stops.Stops(str(path), 0, 2), stops.Stops(str(path), 1, 2)


def test_a_stop_on_one_worker_reaches_the_others_readers(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    reader = Seen()
    b.followers[7] = [reader]  # follow() would start the poller, which needs a loop
    assert b.get(7) is None
    a.stop(7, 1_000)
    b.refresh()
    assert reader.at == [1_000] and b.get(7) == 1_000
    a.stop(7, 900)  # the earliest stop of an answer wins
    assert b.get(7) == 900 and reader.at == [1_000, 900]
    a.stop(7, 2_000)
    assert b.get(7) == 900


def test_a_restarted_worker_relearns_its_own_stops_and_the_ring_keeps_the_last(
    tmp_path: Path,
) -> None:
    a, _ = pair(tmp_path)
    for seed in range(stops.RING + 10):
        a.stop(seed, seed + 1)
    again = stops.Stops(str(tmp_path / "table.stops"), 0, 2)  # slot 0, started anew
    assert again.get(stops.RING + 9) == stops.RING + 10
    assert again.get(0) is None  # fell out of the ring


def test_one_process_keeps_its_stops_in_its_own_memory() -> None:
    alone = stops.Stops()
    assert not alone.shared
    alone.stop(3, 5)
    assert alone.get(3) == 5


def test_a_stopped_stream_ends_with_what_was_due_or_sent() -> None:
    s = Stream(created_ns=0, tokens=400, rate=40.0, seed=1)
    cut = s.stopped(100_000_000)  # 0.1 s: seqs 0..4 due (0, 25, 50, 75, 100 ms)
    assert cut.tokens == 5 and cut.end_fields() == '"tokens":5,"stopped":100000000'
    assert s.stopped(100_000_000, sent=9).tokens == 9  # a reader that learned late keeps its 9
    assert s.stopped(10**12) is s  # the answer had ended: nothing to stop
    assert cut.stopped(0) is cut and s.end_fields() == '"tokens":400'


def test_the_producer_keeps_a_stop_that_comes_before_its_start() -> None:
    """With the shared log, start and stop reach the producer over two backends' links: a stop
    first must still end the answer, at 0 tokens, when the start comes."""
    from servers.tokens.core import Codec
    from servers.topology.producer import Producer, ProducerConfig

    class Link:
        peer = "test"

        def __init__(self) -> None:
            self.lines: list[tuple[str, object, int, str]] = []
            self.answers: set[object] = set()

        def emit(self, sid: str, seq: object, t: int, text: str) -> None:
            self.lines.append((sid, seq, t, text))

    producer = Producer(ProducerConfig())
    sid, _ = Codec(producer.cfg.secret.encode()).new_stream(400, 40.0, 1_000)
    producer.stop(sid)  # before its start
    producer.stop("not-one-of-ours")
    assert list(producer.early) == [sid]
    link = Link()
    producer.start(sid, link)  # type: ignore[arg-type]
    assert [(s, seq, text) for s, seq, _, text in link.lines] == [(sid, "end", "0")]
    assert not producer.making  # nothing generated


def test_only_the_exact_stop_message_stops() -> None:
    from servers.ws.stock import is_stop

    assert is_stop({"text": '{"stop":true}'}) and is_stop({"text": '{ "stop" : true }'})
    for text in ('{"stop":1}', '{"stop":false}', '{"stop":true,"x":1}', "stop", "[]", None):
        assert not is_stop({"text": text}), text
    assert not is_stop({"bytes": b'{"stop":true}'})
