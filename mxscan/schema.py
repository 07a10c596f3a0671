"""The JSON Schema of a results line, generated from the record classes.

``schema/domain-record.schema.json`` is the committed copy users read; a test
keeps it equal to what this module generates.
"""

from __future__ import annotations

import json

from engine.records import json_schema
from probes.domain import DomainRecord, HostRecord, RunRecord

__all__ = ["schema", "schema_text"]


def schema() -> dict[str, object]:
    # One schema for every kind of line (probes.domain): a domain, host or run line.
    return json_schema(DomainRecord | HostRecord | RunRecord, title="mxscan results line")


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=False) + "\n"
