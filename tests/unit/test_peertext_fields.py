"""Every record field that holds peer text gets the one treatment (``engine.peertext``).

Each field is driven through the pure core that fills it (the SMTP reply parser and the
session's observation, the EHLO reader, the DNS wire reader, the MTA-STS record and policy
readers, the exception describer), not through the helper, so a site that bounds or
escapes text its own way fails here.  The table: C0 controls, DEL and C1 controls as
``\\xNN``; U+2028/U+2029 kept (the line encoder escapes them); invalid UTF-8 replaced
where the field is read from bytes; the bound at exactly N and at N + 1 characters.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from engine.peertext import EXCEPTION_TEXT_LIMIT, TRUNCATION_MARK, exception_text
from probes.dns.wire import EDE_TEXT_LIMIT, parse_response
from probes.mtasts.policy import parse_policy
from probes.mtasts.record import MAX_DETAIL, assess_sts_txt
from probes.smtp.ehlo import MAX_PARAM_TEXT, parse_ehlo
from probes.smtp.reply import ReplyParser
from probes.smtp.session import TEXT_LIMIT, Observation


@dataclass(frozen=True)
class Field:
    """A record field: how to fill it from peer text, what precedes the text, its bound."""

    name: str
    fill: Callable[[bytes], str]
    #: Text of ours the field starts with (a reason's code, an exception's type).
    prefix: str
    #: Characters of peer text the field holds (N): its limit, less the prefix if that counts.
    room: int
    #: Read from bytes (invalid UTF-8 reaches it) rather than from already-decoded text.
    from_bytes: bool = True


def _reply_text(raw: bytes) -> str:
    obs = Observation()
    (reply,) = ReplyParser().feed(b"421 " + raw + b"\r\n")
    obs.saw(reply)
    return obs.last_text


def _ehlo_greeting(raw: bytes) -> str:
    (reply,) = ReplyParser().feed(b"250 mx.example " + raw + b"\r\n")
    return parse_ehlo(reply).greeting_text


def _ede_text(raw: bytes) -> str:
    # RFC 8914 §2: option 15 = INFO-CODE (2 octets) + EXTRA-TEXT, in an OPT record (RFC 6891).
    option = struct.pack(">HHH", 15, 2 + len(raw), 18) + raw
    opt = b"\x00" + struct.pack(">HHIH", 41, 1232, 0, len(option)) + option
    header = struct.pack(">HHHHHH", 1, 0x8180, 0, 0, 0, 1)
    ((_, text),) = parse_response(header + opt).ede
    return text


def _sts_record_detail(raw: bytes) -> str:
    # TXT strings reach the record reader decoded (probes.dns.classify.format_rdata).
    (reason,) = assess_sts_txt(["v=STSv1; id=" + raw.decode()]).reasons
    return reason


def _policy_detail(raw: bytes) -> str:
    body = b"version: STSv1\r\nmode: " + raw + b"\r\nmx: mx.example\r\nmax_age: 86400\r\n"
    return next(r for r in parse_policy(body).reasons if r.startswith("invalid-mode:"))


def _exception_detail(raw: bytes) -> str:
    return exception_text(ValueError(raw.decode()))


FIELDS = [
    Field("smtp-reply-text", _reply_text, "", TEXT_LIMIT),
    Field("ehlo-greeting", _ehlo_greeting, "", MAX_PARAM_TEXT),
    Field("dns-ede-text", _ede_text, "", EDE_TEXT_LIMIT),
    # A reason's code is not peer text: MAX_DETAIL bounds what follows it.
    Field("mta-sts-record-detail", _sts_record_detail, "invalid-id:", MAX_DETAIL, from_bytes=False),
    Field("mta-sts-policy-detail", _policy_detail, "invalid-mode:", MAX_DETAIL),
    # The exception's type counts against the limit: the whole description is bounded.
    Field(
        "exception-detail",
        _exception_detail,
        "ValueError: ",
        EXCEPTION_TEXT_LIMIT - len("ValueError: "),
        from_bytes=False,
    ),
]

# (id, peer text, what the field holds after the prefix); N-dependent rows are built below.
TREATMENT = [
    ("c0-controls", "a\x1b[2Jb\x00c\x08", "a\\x1b[2Jb\\x00c\\x08"),
    ("del", "a\x7fb", "a\\x7fb"),
    ("c1-controls", "a\x85b\x9bc", "a\\x85b\\x9bc"),
    ("line-and-paragraph-separators-kept", "a\u2028b\u2029c", "a\u2028b\u2029c"),
    ("printable-unicode-kept", "caf\u00e9 \U0001f4e7", "caf\u00e9 \U0001f4e7"),
]


def _cases() -> list[object]:
    cases: list[object] = []
    for f in FIELDS:
        room = f.room
        rows = [(i, text.encode(), f.prefix + held) for i, text, held in TREATMENT]
        rows.append(("exactly-n", b"x" * room, f.prefix + "x" * room))
        rows.append(("n-plus-one", b"x" * (room + 1), f.prefix + "x" * (room - 1) + TRUNCATION_MARK))
        if f.from_bytes:
            rows.append(("invalid-utf8-replaced", b"caf\xe9!", f.prefix + "caf\ufffd!"))
        cases += [pytest.param(f, raw, held, id=f"{f.name}-{i}") for i, raw, held in rows]
    return cases


@pytest.mark.parametrize(("field", "raw", "held"), _cases())
def test_peer_text_gets_one_treatment_in_every_field(field: Field, raw: bytes, held: str) -> None:
    assert field.fill(raw) == held
