"""The results document: typed records (``schema``), the writer (``document``), the loader with
its schema-version upgrade and validator (``load``), the machine and its yardstick
(``machine``) and the queries over runs (``queries``). Load, faults, browser and report depend on
this package; it depends on none of them (docs/results-schema.md)."""

from bench.results.document import new_doc, write
from bench.results.load import SchemaError, load, load_all, upgrade, validate
from bench.results.schema import SCHEMA_VERSION, Document

__all__ = ["SCHEMA_VERSION", "Document", "SchemaError", "load", "load_all", "new_doc", "upgrade",
           "validate", "write"]  # fmt: skip
