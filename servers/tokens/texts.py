"""Token texts: what token ``seq`` of a stream says.

Rules (docs/protocol.md, "A stream"):
- the text is a pure function of (stream seed, seq): no process state, no ``hash()``, no clock;
- every text is 5 to 20 bytes of UTF-8;
- in any 400 consecutive seqs at least 20 texts hold a multi-byte character and at least 8 a
  newline. This is guaranteed by position, not by chance: seqs with ``seq % 10 in (3, 8)`` draw
  from the multi-byte pool (80 per 400) and ``seq % 20 == 11`` from the newline pool (20 per 400).

Each text is also kept JSON-encoded, so a payload is built with one string format per token.
"""

from __future__ import annotations

import json

_WORDS = (  # noqa: SIM905 (prose reads better than a hundred one-word lines)
    "the model streams tokens over the wire while every client reads them back in order and "
    "checks each sequence number against its schedule latency grows when the server falls "
    "behind so measure it honestly against the due time carried in every payload reconnect "
    "resume replay backlog heartbeat transport socket worker process browser event source "
    "channel frame message answer prompt context window budget sample result chart report "
    "verdict capacity memory connection cursor"
).split()

_MULTI = (
    " café",
    " naïve",
    " über",
    " señor",
    " résumé",
    " Ωmega",
    " 東京",
    " 数据流",
    " 🙂 ok",
    " 😀👍",
    " façade",
    " Zürich",
    " Ärger",
    " 日本語",
    " 한국어",
    " πρώτο",
    " 🚀 go",
    " crème",
    " Москва",
    " ½ cup",
    " 10 €",
    " naïveté",
    " 🌍!",
    " Łódź",
)

_NEWLINE = (
    ".\n\nThe",
    ":\n- item",
    "\n\n## Next",
    " end.\n",
    "\n```py\n",
    ",\n  and",
    "\n> note",
    " yes!\n\n",
    "\n1. first",
    " done\n\n",
    "\n- café",
    ";\n\t x",
)


def _pool(texts: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for text in texts:
        size = len(text.encode("utf-8"))
        if not 5 <= size <= 20:
            raise ValueError(f"token text {text!r} is {size} bytes, outside 5..20")
        out.append((text, json.dumps(text, ensure_ascii=False)))
    return tuple(out)


_LONG = [w for w in _WORDS if len(w) >= 4]
PLAIN = _pool([" " + w for w in _LONG] + [" " + w + "," for w in _LONG[:24]])
MULTI = _pool(_MULTI)
NEWLINE = _pool(_NEWLINE)

_MASK64 = (1 << 64) - 1


def _mix(seed: int, seq: int) -> int:
    """SplitMix64 finaliser of (seed, seq): cheap, deterministic, well spread."""
    z = (seed + (seq + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _entry(seed: int, seq: int) -> tuple[str, str]:
    r = seq % 20
    if r in (3, 8, 13, 18):
        pool = MULTI
    elif r == 11:
        pool = NEWLINE
    else:
        pool = PLAIN
    return pool[_mix(seed, seq) % len(pool)]


def text(seed: int, seq: int) -> str:
    """The text of token ``seq`` of the stream whose seed is ``seed``."""
    return _entry(seed, seq)[0]


def text_json(seed: int, seq: int) -> str:
    """The same text as a JSON string literal (quotes and escapes included)."""
    return _entry(seed, seq)[1]
