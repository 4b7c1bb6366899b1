"""An incremental ``text/event-stream`` parser, sans-I/O.

Follows WHATWG HTML, section 9.2.6 "Interpreting an event stream":
- the stream is UTF-8; one leading BOM is stripped, invalid bytes become U+FFFD;
- lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next
  are one line end);
- an empty line dispatches the event; a line starting with ``:`` is a comment;
- ``field: value`` (one leading space of the value removed), or a bare ``field`` with an empty
  value; ``event`` sets the type, ``data`` appends value + LF, ``id`` sets the last event ID
  unless the value contains NULL, ``retry`` sets the reconnection time if it is all ASCII
  digits; other fields are ignored;
- on dispatch the last event ID is set even when the data buffer is empty; an event with an empty
  data buffer is not fired; one trailing LF is removed from the data; the type defaults to
  ``message``;
- at end of stream an unfinished event is dropped (``close()`` fires nothing).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import NamedTuple

_LINE_END = re.compile(r"\r\n|\r|\n")


class Event(NamedTuple):
    type: str
    data: str
    last_event_id: str


class SSEParser:
    def __init__(self, on_event: Callable[[str, str, str], None] | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._buf = ""
        self._skip_lf = False
        self._type = ""
        self._data: list[str] = []
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.events: list[Event] = []
        self.on_event = on_event or self._collect

    def _collect(self, type_: str, data: str, last_id: str) -> None:
        self.events.append(Event(type_, data, last_id))

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        buf = self._buf + text if self._buf else text
        if "\r" in buf:
            lines = _LINE_END.split(buf)
            self._skip_lf = buf.endswith("\r")
        else:
            lines = buf.split("\n")
        self._buf = lines.pop()
        for line in lines:
            if not line:
                self._dispatch()
            elif line[0] != ":":
                name, colon, value = line.partition(":")
                if colon and value[:1] == " ":
                    value = value[1:]
                if name == "data":  # the common field, without a call
                    self._data.append(value)
                else:
                    self._field(name, value)

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "event":
            self._type = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> None:
        self.last_event_id = self._id_buffer
        data, type_ = self._data, self._type
        self._data, self._type = [], ""
        if data:
            self.on_event(type_ or "message", "\n".join(data), self.last_event_id)

    def close(self) -> None:
        """End of stream: whatever event was unfinished is discarded."""
        self._buf, self._data, self._type, self._skip_lf = "", [], "", False
