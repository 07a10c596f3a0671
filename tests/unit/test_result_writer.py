"""probes/writer.py against a real ResultStore: the layout probes/results.py reads back.

Host lines come before the first record that references them and once per run; names the
file already holds are skipped; an invalid list line is recorded once; the run line ends a
finished list and is not written again when a resumed run added nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from pathlib import Path

import orjson

from engine.checkpoint import ResultStore
from engine.inputs import InputError, InputItem
from engine.singleflight import SingleFlight
from engine.status import Status
from probes.domain import ScanMeta
from probes.hostcache import HostLines
from probes.plan import unmeasured_smtp
from probes.results import read_domain_records
from probes.smtp.probe import SmtpProbe
from probes.transport import MxTransport, smtp_ref
from probes.writer import ResultWriter

META = ScanMeta(
    tool="mxscan",
    version="9.9",
    started="2026-01-01T00:00:00.000Z",
    resolver="127.0.0.1:53",
    dnssec_validating=True,
    ehlo_name="scanner.test",
    contact="",
)


def _probe(address: str) -> SmtpProbe:
    return unmeasured_smtp("mx.shared.test", address, 25, RuntimeError("x"))


def _item(line: int, name: str, valid: bool = True) -> InputItem:
    return InputItem(line, name, name if valid else None, "" if valid else "not a domain name")


def _writer(path: Path, *cached: SmtpProbe) -> ResultWriter:
    """A writer whose SMTP cache holds ``cached`` (as the scan's single-flight cache would)."""
    cache: SingleFlight[tuple[str, str], SmtpProbe] = SingleFlight(10)

    async def fill() -> None:
        for probe in cached:
            await cache.get((probe.result.host, probe.result.address), functools.partial(_value, probe))

    asyncio.run(fill())
    opened = ResultStore(path)
    return ResultWriter(opened, opened.open(), META, HostLines(cache))


async def _value(probe: SmtpProbe) -> SmtpProbe:
    return probe


def _with_hosts(writer: ResultWriter, item: InputItem, probes: tuple[SmtpProbe, ...]) -> None:
    transport = MxTransport("mx.shared.test", 10, None, tuple(smtp_ref(p.result) for p in probes), None)
    writer.write(writer.record(item, mx_transport=(transport,)), (probes,))


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_host_lines_precede_their_first_reference_and_are_written_once(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    shared = (_probe("127.0.0.9"), _probe("127.0.0.10"))
    writer = _writer(path, *shared)
    _with_hosts(writer, _item(1, "a.test"), shared)
    _with_hosts(writer, _item(2, "b.test"), shared)
    writer.store.close()
    kinds = ["ref" if "ref" in line else line["domain"] for line in _lines(path)]
    assert kinds == ["ref", "ref", "a.test", "b.test"]
    resolved = [[a["address"] for a in r["mx_transport"][0]["addresses"]] for r in read_domain_records(path)]
    assert resolved == [["127.0.0.9", "127.0.0.10"]] * 2
    assert writer.written == 2


def test_known_names_are_skipped_and_an_invalid_line_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    first = _writer(path)
    first.write(first.record(_item(1, "a.test")))
    first.store.close()
    again = _writer(path)
    items = [_item(1, "a.test"), _item(2, "b.test"), _item(3, "-bad-", False), _item(4, "-bad-", False)]
    assert [i.domain for i in again.targets(iter(items))] == ["b.test"]
    again.store.close()
    assert again.skipped_done == 1
    invalid = [line for line in _lines(path) if line.get("status") == Status.INVALID_INPUT]
    assert [(r["domain"], r["input_line"], r["reason"]) for r in invalid] == [
        ("-bad-", 3, "not a domain name")
    ]


def test_a_list_that_breaks_mid_stream_stops_the_targets_and_says_why(tmp_path: Path) -> None:
    def broken() -> object:
        yield _item(1, "a.test")
        raise InputError("list.txt: unreadable at line 2")

    writer = _writer(tmp_path / "r.ndjson")
    assert [i.domain for i in writer.targets(broken())] == ["a.test"]  # type: ignore[arg-type]
    assert writer.input_error == "list.txt: unreadable at line 2"


def test_the_run_line_ends_a_finished_list_once(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    writer = _writer(path)
    writer.write(writer.record(_item(1, "a.test")))
    writer.mark_finished()
    writer.store.close()
    run = _lines(path)[-1]["run"]
    assert run["finished"] is True and run["domains"] == 1 and run["version"] == "9.9"  # type: ignore[index]
    resumed = _writer(path)
    resumed.mark_finished()  # nothing new: the file already ends with its run line
    resumed.store.close()
    assert sum("run" in line for line in _lines(path)) == 1


def test_a_record_is_the_given_fields_over_a_success_without_results() -> None:
    writer = ResultWriter.__new__(ResultWriter)
    writer.meta = META
    record = writer.record(_item(7, "a.test"), status=Status.SKIPPED, reason="excluded")
    assert (record.domain, record.input_line, record.status, record.reason) == (
        "a.test", 7, Status.SKIPPED, "excluded",
    )  # fmt: skip
    assert record.scan is META and record.dns is None and record.mx_transport == () and record.errors == ()
    assert dataclasses.replace(record, measured_at="") == dataclasses.replace(
        writer.record(_item(7, "a.test"), status=Status.SKIPPED, reason="excluded"), measured_at=""
    )
