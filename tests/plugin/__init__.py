"""A throwaway transport, registered from outside tokenbench: newline-delimited JSON.

What adding a transport takes (docs/transports.md): this one record, plus its server module and
its client module. ``TOKENBENCH_PLUGINS=tests.plugin`` makes every process (CLI, server workers,
load processes) import this module, so the record reaches them all.
"""

from __future__ import annotations

import transports

NDJSON = transports.register(
    transports.Transport(
        name="ndjson",
        label="NDJSON",
        color="#9467bd",
        server="tests.plugin.server",
        reader="tests.plugin.client:NdjsonReader",
    )
)
