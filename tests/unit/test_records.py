"""The record codec: encode/decode round trips and the generated JSON Schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.records import DecodeError, decode, encode, field_docs, json_schema
from engine.status import Status
from mxscan.schema import schema, schema_text
from probes.dns.records import Answer, DnsResult, Dnssec, Ede, ImplicitMx, MxHost, Outcome, TlsaSkip
from probes.domain import SCHEMA_VERSION, DomainRecord, ProbeError, ScanMeta

ROOT = Path(__file__).resolve().parents[2]

names = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True)
texts = st.text(max_size=40)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
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
def domain_records(draw: st.DrawFn) -> DomainRecord:
    hosts = tuple(
        MxHost(
            preference=draw(st.integers(0, 65535)),
            host=draw(names),
            a=draw(answers()),
            aaaa=draw(answers()),
            tlsa=draw(st.none() | answers()),
            tlsa_skipped=draw(st.none() | st.sampled_from(TlsaSkip)),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    dns = draw(
        st.none()
        | st.builds(
            DnsResult,
            mx=answers(),
            has_mx=st.booleans(),
            null_mx=st.booleans(),
            mx_hosts=st.just(hosts),
            implicit_mx=st.none() | st.builds(ImplicitMx, a=answers(), aaaa=answers()),
            mta_sts=answers(),
            tlsrpt=answers(),
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


@settings(max_examples=150, deadline=None)
@given(domain_records())
def test_round_trip_through_json(record: DomainRecord) -> None:
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(DomainRecord, orjson.loads(line)) == record


@settings(max_examples=100, deadline=None)
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
