"""A mergeable log-linear histogram of non-negative integers (microseconds), HDR-style.

Values below 128 have a bucket each (exact). Above, every power of two is split into 64
sub-buckets, so a bucket's width is at most 1/64 of its value: a percentile is reported as the
upper edge of its bucket, at most 1.6 % above the true value, and never below it. The exact
minimum and maximum are kept beside the buckets. Histograms from many processes merge by
adding counts; on disk one is a sparse list of [index, count] pairs, a few hundred bytes.
"""

from __future__ import annotations

from typing import Any

SUB_BITS = 6
SUB = 1 << SUB_BITS  # 64 sub-buckets per power of two
LINEAR = 2 * SUB  # values below this have their own bucket
MAX_VALUE = (1 << 40) - 1  # about 12.7 days in microseconds; larger values are clamped
SIZE = (40 - SUB_BITS) * SUB + LINEAR


def index_of(value: int) -> int:
    if value < LINEAR:
        return value if value > 0 else 0
    if value > MAX_VALUE:
        value = MAX_VALUE
    shift = value.bit_length() - SUB_BITS - 1
    return (shift << SUB_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value that land in bucket ``index``."""
    if index < LINEAR:
        return index, index
    shift = (index >> SUB_BITS) - 1
    top = index - (shift << SUB_BITS)
    return top << shift, ((top + 1) << shift) - 1


class Histogram:
    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * SIZE
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        # index_of, inlined: this runs twice per token in the load generator
        if value < LINEAR:
            i = value if value > 0 else 0
        else:
            if value > MAX_VALUE:
                value = MAX_VALUE
            shift = value.bit_length() - SUB_BITS - 1
            i = (shift << SUB_BITS) + (value >> shift)
        self.counts[i] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        mine = self.counts
        for i, n in enumerate(other.counts):
            if n:
                mine[i] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def merge_raw(self, count: int, lo: int, hi: int, total: int, buckets: list) -> None:
        """Add a histogram given as (count, min, max, sum, [(index, n)]), as the compiled path
        (clients/_fastpath.c, same layout) hands it over."""
        if count == 0:
            return
        mine = self.counts
        for i, n in buckets:
            mine[i] += n
        self.min = lo if self.count == 0 else min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += count
        self.total += total

    def percentile(self, q: float) -> int:
        """Smallest bucket edge with at least ``q`` (0..100) of the values at or below it."""
        if self.count == 0:
            return 0
        if q >= 100:
            return self.max
        rank = max(1, -(-self.count * q // 100))  # ceil
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(bucket_bounds(i)[1], self.max)
        return self.max

    def summary_ms(self) -> dict[str, float]:
        """p50, p90, p99, p999 and max in milliseconds (the results schema's shape)."""
        qs = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
        out = {k: round(self.percentile(q) / 1000, 3) for k, q in qs.items()}
        out["max"] = round(self.max / 1000, 3)
        out["count"] = self.count
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "us",
            "sub_bucket_bits": SUB_BITS,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "sum": self.total,
            "buckets": [[i, n] for i, n in enumerate(self.counts) if n],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Histogram:
        if doc.get("sub_bucket_bits", SUB_BITS) != SUB_BITS:
            raise ValueError("histogram has a different bucket layout")
        h = cls()
        for i, n in doc["buckets"]:
            h.counts[int(i)] += int(n)
        h.count, h.min, h.max, h.total = doc["count"], doc["min"], doc["max"], doc["sum"]
        return h
