"""The token model: streams, ids, schedule, resume cursors and validation. Sans-I/O.

Rules of this module (every transport relies on them):
- No sockets, no asyncio, no framework. Time comes in as an argument (``now_ns``, wall clock
  nanoseconds from ``time.time_ns()``); nothing here reads a clock or sleeps.
- A stream id is self-contained and signed: it carries (created_ns, tokens, rate, seed), so any
  worker process of any server, on any port, serves any stream with no shared state. An id that
  does not verify is "unknown" (404). The key is a benchmark default, not a security boundary.
- Token ``seq`` is due at ``created_ns + floor(seq * 1e9 / rate)`` and never earlier
  (docs/protocol.md).
- A resume point ``after = K`` means "seq K was seen": the reader is owed K+1 onward.
- Bad input raises ``ContractError`` with a kind that each transport maps to its own status
  (HTTP 404/410/413/422, gRPC NOT_FOUND/INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from servers.tokens import texts

DEFAULT_TOKENS = 400
DEFAULT_RATE = 40.0
MAX_TOKENS = 100_000
MAX_RATE = 1000.0
MAX_PROMPT_BYTES = 4096
MAX_BODY_BYTES = 64 * 1024
DEFAULT_REPLAY_TTL = 300.0
MAX_BATCH = 1000  # tokens per write (and per poll answer) when a reader catches up
FAIR_SHARE = 100  # messages one connection writes before yielding to the others
DEFAULT_SECRET = b"tokenbench-default-secret"

_ID = struct.Struct(">BQIdQ")  # version, created_ns, tokens, rate, seed
_MAC_BYTES = 8
_VERSION = 1
_INT = re.compile(r"-?[0-9]{1,12}", re.ASCII)


class ErrorKind(Enum):
    NOT_FOUND = "not_found"  # HTTP 404, gRPC NOT_FOUND
    GONE = "gone"  # HTTP 410, gRPC NOT_FOUND
    INVALID = "invalid"  # HTTP 422, gRPC INVALID_ARGUMENT
    TOO_LARGE = "too_large"  # HTTP 413, gRPC INVALID_ARGUMENT
    UNAVAILABLE = "unavailable"  # HTTP 503, gRPC UNAVAILABLE: the model or the log is away


class ContractError(Exception):
    """A request the contract answers with an error (503: what it needs is away; retry)."""

    def __init__(self, kind: ErrorKind, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field

    def body(self) -> dict[str, str]:
        out = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class Stream:
    """One simulated answer. Everything about it follows from these four values."""

    created_ns: int
    tokens: int
    rate: float
    seed: int
    stopped_ns: int = 0  # the user pressed stop then (0: never); ``tokens`` is then the final count

    def due_ns(self, seq: int) -> int:
        """Wall-clock time at which token ``seq`` may be sent, and not before."""
        return self.created_ns + math.floor(seq * 1e9 / self.rate)

    @property
    def last_due_ns(self) -> int:
        return self.due_ns(self.tokens - 1)

    def due_count(self, now_ns: int) -> int:
        """How many tokens are due at ``now_ns`` (seqs ``0 .. n-1``)."""
        created, rate, tokens = self.created_ns, self.rate, self.tokens
        if now_ns < created:
            return 0
        n = min(tokens, math.floor((now_ns - created) * rate / 1e9) + 1)
        # The float estimate can be one off either way; the schedule (due_ns, inlined: the load
        # generator asks this of every stream it reads, twice a second) decides.
        while n < tokens and created + math.floor(n * 1e9 / rate) <= now_ns:
            n += 1
        while n > 0 and created + math.floor((n - 1) * 1e9 / rate) > now_ns:
            n -= 1
        return n

    def text(self, seq: int) -> str:
        return texts.text(self.seed, seq)

    def payload(self, seq: int) -> str:
        """Compact JSON of one token: ``{"seq":12,"t":...,"text":"..."}``."""
        return f'{{"seq":{seq},"t":{self.due_ns(seq)},"text":{texts.text_json(self.seed, seq)}}}'

    def stopped(self, stopped_ns: int, sent: int = 0) -> Stream:
        """This answer stopped at ``stopped_ns``: it ends with the tokens due then, or the
        ``sent`` a reader already had (it learned of the stop late). Unchanged if it had ended."""
        final = max(self.due_count(stopped_ns), min(sent, self.tokens))
        if final >= self.tokens or self.stopped_ns:
            return self
        return dataclasses.replace(self, tokens=final, stopped_ns=stopped_ns)

    def end_fields(self) -> str:
        """What every transport's end message says: ``"tokens":N``, and ``"stopped":ns`` when
        the user stopped the answer (docs/protocol.md, "Stop")."""
        if self.stopped_ns:
            return f'"tokens":{self.tokens},"stopped":{self.stopped_ns}'
        return f'"tokens":{self.tokens}'

    def end_payload(self) -> str:
        return f"{{{self.end_fields()}}}"

    def cursor(self, after: int) -> Cursor:
        return Cursor(self, after)

    def expired(self, now_ns: int, replay_ttl: float, last_ns: int | None = None) -> bool:
        """Past the replay window: ``replay_ttl`` after the last token (its due time, or
        ``last_ns`` where a source knows better: an LLM's answer ends later)."""
        last = self.last_due_ns if last_ns is None else last_ns
        return now_ns > last + int(replay_ttl * 1e9)


class Cursor:
    """What one reader is owed: the next seq, and which tokens are due now."""

    __slots__ = ("next_seq", "stream")

    def __init__(self, stream: Stream, after: int) -> None:
        self.stream = stream
        self.next_seq = after + 1

    @property
    def done(self) -> bool:
        return self.next_seq >= self.stream.tokens

    def take(self, now_ns: int, limit: int = MAX_BATCH) -> range:
        """Seqs due at ``now_ns`` not yet taken (at most ``limit``); advances the cursor."""
        end = min(self.stream.due_count(now_ns), self.next_seq + limit)
        out = range(self.next_seq, max(end, self.next_seq))
        self.next_seq = out.stop
        return out

    def next_due_ns(self) -> int:
        return self.stream.due_ns(self.next_seq)


def _encode(blob: bytes) -> str:
    """The one spelling of an id: base64url without padding."""
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


class Codec:
    """Makes and reads stream ids, signed with a shared key."""

    def __init__(self, secret: bytes = DEFAULT_SECRET) -> None:
        self._secret = secret

    def _mac(self, raw: bytes) -> bytes:
        return hmac.new(self._secret, raw, hashlib.sha256).digest()[:_MAC_BYTES]

    def new_stream(self, tokens: int, rate: float, now_ns: int) -> tuple[str, Stream]:
        stream = Stream(now_ns, tokens, rate, int.from_bytes(os.urandom(8), "big"))
        raw = _ID.pack(_VERSION, stream.created_ns, tokens, rate, stream.seed)
        sid = _encode(raw + self._mac(raw))
        return sid, stream

    def decode(self, sid: str) -> Stream:
        """The stream behind ``sid``; ``ContractError(NOT_FOUND)`` if it is not one of ours."""
        blob = None
        if len(sid) < 80 and sid.isascii():
            try:
                blob = base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))
            except (binascii.Error, ValueError):
                blob = None
        if blob is None or len(blob) != _ID.size + _MAC_BYTES or _encode(blob) != sid:
            # the last check refuses spellings base64 would forgive: padding bits, stray bytes
            raise ContractError(ErrorKind.NOT_FOUND, "unknown stream id")
        raw, mac = blob[: _ID.size], blob[_ID.size :]
        if not hmac.compare_digest(mac, self._mac(raw)):
            raise ContractError(ErrorKind.NOT_FOUND, "unknown stream id")
        version, created_ns, tokens, rate, seed = _ID.unpack(raw)
        if version != _VERSION:
            raise ContractError(ErrorKind.NOT_FOUND, "unknown stream id version")
        return Stream(created_ns, tokens, rate, seed)

    def open(self, sid: str, now_ns: int, replay_ttl: float,
             last_ns: Callable[[Stream], int] | None = None) -> Stream:  # fmt: skip
        """Decode and check the replay window (410 once it has passed); ``last_ns`` gives the
        stream's last token time where the source is not the schedule."""
        stream = self.decode(sid)
        if stream.expired(now_ns, replay_ttl, last_ns(stream) if last_ns else None):
            raise ContractError(ErrorKind.GONE, "stream is past its replay window")
        return stream


# --- validation -------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_create(body: Any) -> tuple[int, float]:
    """Check a decoded prompt-POST body; returns (tokens, rate)."""
    if not isinstance(body, dict):
        raise ContractError(ErrorKind.INVALID, "body must be a JSON object", "body")
    prompt = body.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ContractError(ErrorKind.INVALID, "prompt must be a string", "prompt")
        if len(prompt.encode("utf-8", "surrogatepass")) > MAX_PROMPT_BYTES:
            raise ContractError(ErrorKind.INVALID, "prompt is over 4096 bytes", "prompt")
    tokens = body.get("tokens", DEFAULT_TOKENS)
    if not _is_int(tokens) or not 1 <= tokens <= MAX_TOKENS:
        raise ContractError(ErrorKind.INVALID, "tokens must be an integer 1..100000", "tokens")
    rate = body.get("rate", DEFAULT_RATE)
    if not (_is_int(rate) or isinstance(rate, float)) or not 0 < rate <= MAX_RATE:
        raise ContractError(ErrorKind.INVALID, "rate must be a number, 0 < rate <= 1000", "rate")
    return tokens, float(rate)


def parse_after(value: str | int | None, stream: Stream, field: str = "after") -> int:
    """A resume point: None means -1 (from seq 0); valid range is -1 .. tokens-1."""
    if value is None:
        return -1
    if isinstance(value, str):
        if not _INT.fullmatch(value.strip()):
            raise ContractError(ErrorKind.INVALID, f"{field} must be an integer", field)
        value = int(value)
    if not -1 <= value <= stream.tokens - 1:
        raise ContractError(
            ErrorKind.INVALID, f"{field} must be -1 .. {stream.tokens - 1} for this stream", field
        )
    return value


def parse_timeout(value: str | None, default: float = 25.0, maximum: float = 60.0) -> float:
    """The long-poll wait: a number of seconds, 0 .. 60."""
    if value is None:
        return default
    try:
        t = float(value)
    except ValueError:
        raise ContractError(ErrorKind.INVALID, "timeout must be a number", "timeout") from None
    if not 0 <= t <= maximum:
        raise ContractError(ErrorKind.INVALID, f"timeout must be 0 .. {maximum:g}", "timeout")
    return t
