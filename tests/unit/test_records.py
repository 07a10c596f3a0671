"""The record codec: encode/decode round trips and the generated JSON Schema."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.peertext import TRUNCATION_MARK
from engine.records import MAX_LINE_BYTES, DecodeError, decode, encode, field_docs, json_schema
from engine.status import Status
from mxscan.schema import schema, schema_text
from probes.dns.records import Answer, DnsResult, Dnssec, Ede, ImplicitMx, MxHost, Outcome, TlsaSkip
from probes.domain import SCHEMA_VERSION, DomainRecord, ProbeError, ScanMeta
from probes.mtasts.match import coverage
from probes.mtasts.policy import MAX_POLICY_BYTES, parse_policy
from probes.mtasts.record import StsRecord
from probes.mtasts.records import MtaStsResult
from tests.profiles import at_most

ROOT = Path(__file__).resolve().parents[2]

names = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True)
texts = st.text(max_size=40)


@st.composite
def answers(draw: st.DrawFn, texts: st.SearchStrategy[str] = texts) -> Answer:
    return Answer(
        name=draw(names),
        rrtype=draw(st.sampled_from(["MX", "A", "AAAA", "TXT", "TLSA"])),
        outcome=draw(st.sampled_from(Outcome)),
        dnssec=draw(st.sampled_from(Dnssec)),
        ad=draw(st.booleans()),
        ttl=draw(st.none() | st.integers(0, 2**31 - 1)),
        cname_chain=tuple(draw(st.lists(names, max_size=3))),
        data=tuple(draw(st.lists(texts, max_size=4))),
        rcode=draw(st.sampled_from(["NOERROR", "NXDOMAIN", "SERVFAIL", ""])),
        ede=tuple(draw(st.lists(st.builds(Ede, code=st.integers(0, 65535), text=texts), max_size=2))),
        detail=draw(texts),
    )


@st.composite
def domain_records(draw: st.DrawFn, texts: st.SearchStrategy[str] = texts) -> DomainRecord:
    hosts = tuple(
        MxHost(
            preference=draw(st.integers(0, 65535)),
            host=draw(names),
            a=draw(answers(texts)),
            aaaa=draw(answers(texts)),
            tlsa=draw(st.none() | answers(texts)),
            tlsa_skipped=draw(st.none() | st.sampled_from(TlsaSkip)),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    dns = draw(
        st.none()
        | st.builds(
            DnsResult,
            mx=answers(texts),
            has_mx=st.booleans(),
            null_mx=st.booleans(),
            mx_hosts=st.just(hosts),
            implicit_mx=st.none() | st.builds(ImplicitMx, a=answers(texts), aaaa=answers(texts)),
            mta_sts=answers(texts),
            tlsrpt=answers(texts),
        )
    )
    return DomainRecord(
        schema_version=SCHEMA_VERSION,
        domain=draw(names),
        input_line=draw(st.integers(0, 10**7)),
        status=draw(st.sampled_from(Status)),
        reason=draw(texts),
        scan=ScanMeta(
            tool="mxscan",
            version="0.1.0",
            started="2026-11-29T00:00:00Z",
            resolver="x",
            dnssec_validating=True,
            ehlo_name="scanner.mxscan.test",
            contact="https://scanner.mxscan.test/",
        ),
        measured_at="2026-11-29T00:00:01.000Z",
        duration_ms=draw(st.floats(0, 1e6, allow_nan=False)),
        dns=dns,
        mx_transport=(),
        mta_sts=None,
        tlsrpt=None,
        posture=None,
        errors=tuple(
            draw(
                st.lists(
                    st.builds(ProbeError, probe=st.just("dns"), status=st.sampled_from(Status), detail=texts),
                    max_size=2,
                )
            )
        ),
    )


@at_most(150)  # a whole random DomainRecord per example: ~0.2 s each on a loaded machine
@given(domain_records())
def test_round_trip_through_json(record: DomainRecord) -> None:
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(DomainRecord, orjson.loads(line)) == record


@at_most(100)  # jsonschema over a whole random record: ~0.8 s an example on a loaded machine
@given(domain_records())
def test_every_encoded_record_validates_against_the_schema(record: DomainRecord) -> None:
    jsonschema.validate(orjson.loads(encode(record)), schema())


def test_committed_schema_file_is_current() -> None:
    committed = (ROOT / "schema" / "domain-record.schema.json").read_text()
    assert committed == schema_text(), "run: mxscan schema --out schema/domain-record.schema.json"


def test_every_field_is_documented() -> None:
    for cls in (DomainRecord, ScanMeta, ProbeError, DnsResult, MxHost, ImplicitMx, Answer, Ede):
        assert set(field_docs(cls)) == {f for f in cls.__dataclass_fields__}, cls


@dataclass(frozen=True, slots=True)
class _Undocumented:
    """No Fields block.

    Fields:
      a: documented.
    """

    a: int
    b: int


def test_schema_refuses_undocumented_fields() -> None:
    with pytest.raises(TypeError, match="b has no documentation"):
        json_schema(_Undocumented)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"code": "6", "text": ""}, "expected an integer"),
        ({"code": True, "text": ""}, "expected an integer"),
        ({"code": 6}, "missing field 'text'"),
        ([], "expected an object"),
    ],
    ids=["string-for-int", "bool-for-int", "missing-field", "list-for-object"],
)
def test_decode_rejects_misfits(value: object, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(Ede, value)


def test_decode_rejects_unknown_enum_value() -> None:
    with pytest.raises(DecodeError, match="not a Status"):
        decode(ProbeError, {"probe": "dns", "status": "exploded", "detail": ""})


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(schema_text()))


# ------------------------------------------------ line separators (issue 13, item 14)

#: Every character str.splitlines splits on.
SEPARATORS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@st.composite
def separator_texts(draw: st.DrawFn) -> str:
    """Text holding every line separator, among other characters."""
    parts = [*SEPARATORS, *draw(st.lists(st.text(max_size=5), max_size=len(SEPARATORS) + 1))]
    return "".join(draw(st.permutations(parts)))


@at_most(50)  # up to three whole records written and read back: ~0.5 s an example
@given(st.lists(domain_records(separator_texts()), min_size=1, max_size=3))
def test_line_separators_are_escaped_so_splitlines_sees_one_record_per_line(
    records: list[DomainRecord],
) -> None:
    blob = b"".join(encode(record) for record in records)
    lines = blob.decode("utf-8").splitlines()
    assert len(lines) == len(records)
    assert [decode(DomainRecord, orjson.loads(line)) for line in lines] == records


@pytest.mark.parametrize("separator", list(SEPARATORS), ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_each_separator_is_written_as_a_json_escape(separator: str) -> None:
    line = encode(Ede(code=6, text=f"a{separator}b"))
    assert separator.encode() not in line[:-1] and line.decode().count("\n") == 1
    assert len(line.decode().splitlines()) == 1
    assert orjson.loads(line)["text"] == f"a{separator}b"


# ------------------------------------------------ the line cap (issue 13, item 14)


def _answer(name: str, rrtype: str, data: tuple[str, ...] = ()) -> Answer:
    return Answer(name, rrtype, Outcome.OK, Dnssec.INSECURE, False, 300, (), data, "NOERROR", (), "")


def _record(
    *,
    txt: tuple[str, ...] = (),
    hosts: int = 1,
    reason: str = "",
    errors: int = 0,
    domain: str = "example.com",
) -> DomainRecord:
    mx_hosts = tuple(
        MxHost(10, f"mx{i}.example.com", _answer(f"mx{i}.example.com", "A", ("192.0.2.1",)),
               _answer(f"mx{i}.example.com", "AAAA"), None, TlsaSkip.ADDRESS_INSECURE)
        for i in range(hosts)
    )  # fmt: skip
    dns = DnsResult(
        mx=_answer(domain, "MX", tuple(f"10 {h.host}" for h in mx_hosts)),
        has_mx=True,
        null_mx=False,
        mx_hosts=mx_hosts,
        implicit_mx=None,
        mta_sts=_answer(f"_mta-sts.{domain}", "TXT", txt),
        tlsrpt=_answer(f"_smtp._tls.{domain}", "TXT"),
    )
    return DomainRecord(
        schema_version=SCHEMA_VERSION,
        domain=domain,
        input_line=1,
        status=Status.SUCCESS,
        reason=reason,
        scan=ScanMeta("mxscan", "0.1.0", "2026-11-29T00:00:00Z", "127.0.0.1:53", True, "s.test", ""),
        measured_at="2026-11-29T00:00:01.000Z",
        duration_ms=1.0,
        dns=dns,
        mx_transport=(),
        mta_sts=None,
        tlsrpt=None,
        posture=None,
        errors=tuple(ProbeError("dns", Status.UNKNOWN_ERROR, f"error {i}") for i in range(errors)),
    )


def _fits(line: bytes) -> dict[str, object]:
    assert len(line) <= MAX_LINE_BYTES and line.endswith(b"\n")
    assert len(line.decode("utf-8").splitlines()) == 1
    value = orjson.loads(line)
    jsonschema.validate(value, schema())
    decode(DomainRecord, value)
    return typing.cast(dict[str, object], value)


@pytest.mark.parametrize(
    ("record", "cuts"),
    [
        (_record(txt=("v=STSv1; id=" + "x" * 100_000,)), ["dns.mta_sts.data[]"]),
        (_record(txt=("\u2028\x01" * 40_000,)), ["dns.mta_sts.data[]"]),
        (_record(hosts=1500), ["dns.mx.data", "dns.mx_hosts"]),
        (_record(errors=3000, reason="r" * 30_000), ["errors"]),
        (_record(txt=("a" * 40_000, "b" * 40_000, "c" * 100)), ["dns.mta_sts.data[]"]),
    ],
    ids=["one-huge-txt", "escapes-counted-in-bytes", "many-mx-hosts", "many-errors", "two-long-txt"],
)
def test_a_record_over_the_line_cap_is_cut_to_fit_and_lists_the_cuts(
    record: DomainRecord, cuts: list[str]
) -> None:
    assert len(orjson.dumps(record)) > MAX_LINE_BYTES  # the hostile case is real
    value = _fits(encode(record))
    assert value["truncated"] == cuts
    assert value["domain"] == record.domain


def test_a_cut_keeps_the_start_of_each_string_and_list_and_everything_short() -> None:
    record = _record(txt=("v=STSv1; id=" + "x" * 100_000, "short"), hosts=1500, reason="why")
    got = decode(DomainRecord, orjson.loads(encode(record)))
    assert got.dns is not None and record.dns is not None
    long_txt, short_txt = got.dns.mta_sts.data
    assert long_txt.endswith(TRUNCATION_MARK) and record.dns.mta_sts.data[0].startswith(long_txt[:-1])
    assert short_txt == "short" and got.reason == "why" and got.scan == record.scan
    assert got.dns.mx_hosts == record.dns.mx_hosts[: len(got.dns.mx_hosts)] and got.dns.mx_hosts


def test_a_record_within_the_cap_is_written_whole() -> None:
    record = _record(txt=("x" * 60_000,))
    line = encode(record)
    assert len(line) <= MAX_LINE_BYTES and orjson.loads(line)["truncated"] == []
    assert decode(DomainRecord, orjson.loads(line)) == record


@st.composite
def hostile_records(draw: st.DrawFn) -> DomainRecord:
    """Records with long strings (some all escapes) and long lists, in any mix."""
    chars = st.sampled_from(["x", "é", "\u2028", "\x01", "📧"])
    txt = tuple(draw(chars) * draw(st.integers(0, 70_000)) for _ in range(draw(st.integers(0, 4))))
    return _record(
        txt=txt,
        hosts=draw(st.integers(0, 600)),
        reason=draw(chars) * draw(st.integers(0, 70_000)),
        errors=draw(st.integers(0, 800)),
        domain=draw(names),
    )


@at_most(25)  # records near the line cap, cut and validated: ~1.2 s an example
@given(hostile_records())
def test_any_record_is_written_within_the_line_cap_as_valid_json(record: DomainRecord) -> None:
    whole = len(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    value = _fits(encode(record))
    assert value["domain"] == record.domain  # the checkpoint's key is never cut
    if whole <= MAX_LINE_BYTES // 2:  # short enough even with every separator escaped
        assert value["truncated"] == [] and decode(DomainRecord, value) == record
    if whole > MAX_LINE_BYTES:
        assert value["truncated"]


@dataclass(frozen=True, slots=True)
class _NoCutField:
    """A line kind with nowhere to list cuts.

    Fields:
      text: some text.
    """

    text: str


def test_a_line_kind_without_a_truncated_field_is_refused_rather_than_cut_silently() -> None:
    with pytest.raises(TypeError, match="no 'truncated' field"):
        encode(_NoCutField("x" * (MAX_LINE_BYTES + 1)))


def test_lines_written_before_the_truncated_field_still_read_and_validate() -> None:
    record = _record(txt=("v=STSv1; id=1",))
    value = orjson.loads(encode(record))
    del value["truncated"]
    assert decode(DomainRecord, value) == record
    jsonschema.validate(value, schema())


def test_a_policy_of_64_kib_of_mx_patterns_is_written_within_the_line_cap() -> None:
    """The shape of the 103 KB record seen in the wild: a policy body at the 64 KiB cap full of
    mx lines, each pattern then written twice (the policy and the stale patterns of coverage)."""
    lines = ["version: STSv1", "mode: enforce", "max_age: 86400"]
    lines += [f"mx: mx{i:05d}.example.net" for i in range(2_600)]
    body = ("\r\n".join(lines) + "\r\n").encode()
    assert len(body) <= MAX_POLICY_BYTES
    policy = parse_policy(body)
    assert policy.valid and len(policy.mx) == 2_600
    sts = MtaStsResult(
        record=StsRecord(present=True, valid=True, id="1", reasons=(), warnings=(), extensions=()),
        txt_cname=(),
        policy_host="mta-sts.example.com",
        policy_host_cname=(),
        policy_host_provider="example.com",
        fetch=None,
        policy=policy,
        coverage=coverage(policy.mx, ("mx.example.com",)),
        mode="enforce",
        would_deliver=False,
        findings=(),
    )
    record = dataclasses.replace(_record(), mta_sts=sts)
    assert len(orjson.dumps(record)) > 100_000
    value = _fits(encode(record))
    assert value["truncated"] == ["mta_sts.coverage.stale_patterns", "mta_sts.policy.mx"]
    got = decode(DomainRecord, value)
    assert got.mta_sts is not None and got.mta_sts.policy is not None
    assert got.mta_sts.policy.mx == policy.mx[: len(got.mta_sts.policy.mx)] and got.mta_sts.mode == "enforce"
