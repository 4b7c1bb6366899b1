"""bench.results.hist: exact below 128, within 1/64 above, mergeable, serialisable."""

from __future__ import annotations

import math
import random

import pytest

from bench.results.hist import MAX_VALUE, SIZE, SUB_BITS, Histogram, bucket_bounds, index_of


def exact_percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def test_buckets_tile_the_range_without_gaps() -> None:
    previous_high = -1
    for index in range(index_of(MAX_VALUE) + 1):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert index_of(low) == index and index_of(high) == index
        assert high - low <= max(0, low // 64)
        previous_high = high


def test_percentiles_are_never_below_truth_and_within_1_6_percent() -> None:
    rng = random.Random(4)
    values = [int(rng.lognormvariate(8, 2)) for _ in range(20_000)] + list(range(130))
    hist = Histogram()
    for v in values:
        hist.record(v)
    for q in (50, 90, 99, 99.9):
        truth = exact_percentile(values, q)
        got = hist.percentile(q)
        assert truth <= got <= truth + truth / 64 + 1, (q, truth, got)
    assert hist.percentile(100) == max(values) == hist.max
    assert hist.min == min(values) and hist.count == len(values)


def test_small_values_are_exact() -> None:
    hist = Histogram()
    for v in (0, 1, 2, 3, 127):
        hist.record(v)
    assert [hist.percentile(q) for q in (20, 40, 60, 80)] == [0, 1, 2, 3]
    hist.record(-5)  # a clock step backwards counts as zero, never crashes
    assert hist.min == -5 and hist.counts[0] == 2


def test_merge_equals_recording_everything_in_one() -> None:
    rng = random.Random(9)
    parts = [[rng.randrange(0, 10**7) for _ in range(3000)] for _ in range(4)]
    merged, whole = Histogram(), Histogram()
    for part in parts:
        h = Histogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(h)
    assert merged.counts == whole.counts
    assert (merged.count, merged.min, merged.max, merged.total) == (
        whole.count, whole.min, whole.max, whole.total,
    )  # fmt: skip
    merged.merge(Histogram())  # merging an empty one changes nothing
    assert merged.count == whole.count


def test_json_round_trip_is_compact_and_lossless() -> None:
    hist = Histogram()
    for v in range(0, 5_000_000, 997):
        hist.record(v)
    doc = hist.to_json()
    assert len(doc["buckets"]) < 1200
    back = Histogram.from_json(doc)
    assert back.counts == hist.counts and back.summary_ms() == hist.summary_ms()


def test_huge_values_are_clamped() -> None:
    hist = Histogram()
    hist.record(MAX_VALUE * 10)
    assert hist.max == MAX_VALUE and hist.percentile(50) == MAX_VALUE


def test_record_puts_values_where_index_of_says() -> None:
    # record() inlines index_of() for speed; the two must never drift apart.
    for value in (0, 1, 127, 128, 129, 1000, 65_535, 10**9, MAX_VALUE, MAX_VALUE + 5):
        hist = Histogram()
        hist.record(value)
        assert hist.counts[index_of(value)] == 1, value


def test_the_compiled_path_buckets_exactly_like_index_of() -> None:
    """clients/_fastpath.c keeps its own copy of the layout: pinned here, value by value."""
    from clients import fast

    if not fast.enabled():
        pytest.fail("the compiled path was not built (make install builds it with cc)")
    c = fast._fastpath
    assert (c.HIST_SIZE, c.HIST_SUB_BITS) == (SIZE, SUB_BITS)
    values = [-5, -1, *range(0, 300)]
    for bits in range(7, 42):  # every power of two, its neighbours and its sub-bucket edges
        p = 1 << bits
        values += [p - 1, p, p + 1, p + (p >> 6), p + (p >> 6) - 1]
    rng = random.Random(7)
    values += [rng.randrange(1 << 41) for _ in range(20_000)]
    values += [MAX_VALUE, MAX_VALUE + 1, 1 << 50]
    for v in values:
        assert c.bucket_index(v) == index_of(v), v
