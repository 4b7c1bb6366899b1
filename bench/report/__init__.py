"""Reporting: results.json and its checks, the report, verdicts, comparisons, tables.

Everything here reads JSON written by a run; nothing here measures or re-runs."""
