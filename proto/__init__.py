"""gRPC stubs for ``proto/tokens.proto``.

The stubs are generated, never hand-written: ``make proto`` builds them, and importing this
package builds them too when they are missing or older than the ``.proto`` file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SOURCE = _HERE / "tokens.proto"
_OUTPUTS = ("tokens_pb2.py", "tokens_pb2_grpc.py", "tokens_pb2.pyi")


def _fresh() -> bool:
    src = _SOURCE.stat().st_mtime
    return all((_HERE / o).exists() and (_HERE / o).stat().st_mtime >= src for o in _OUTPUTS)


def build(force: bool = False) -> None:
    """Run protoc (from grpcio-tools) on tokens.proto; atomic, so parallel workers may race."""
    if not force and _fresh():
        return
    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory(dir=_HERE) as tmp:
        (Path(tmp) / "proto").mkdir()
        shutil.copy(_SOURCE, Path(tmp) / "proto" / "tokens.proto")
        args = [
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(Path(tmp) / "proto" / "tokens.proto"),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {_SOURCE}")
        for name in _OUTPUTS:
            os.replace(Path(tmp) / "proto" / name, _HERE / name)


build()

from proto import tokens_pb2, tokens_pb2_grpc  # noqa: E402

__all__ = ["build", "tokens_pb2", "tokens_pb2_grpc"]
