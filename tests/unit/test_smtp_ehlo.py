"""EHLO extension parsing, from replies shaped like real servers' answers."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import records
from probes.smtp.ehlo import MAX_EXTENSIONS, MAX_PARAM_TEXT, EhloInfo, parse_ehlo
from probes.smtp.reply import Reply, ReplyParser

POSTFIX = (
    b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
    b"250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
)
EXIM = (
    b"250-mx.example.net Hello scanner.example [192.0.2.25]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
    b"250-PIPELINING\r\n250-X_PIPE_CONNECT\r\n250-CHUNKING\r\n250-STARTTLS\r\n250-PRDR\r\n250 HELP\r\n"
)
GMAIL = (
    b"250-mx.google.com at your service, [192.0.2.25]\r\n250-SIZE 157286400\r\n250-8BITMIME\r\n"
    b"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
OUTLOOK = (
    b"250-AM0PR01MB1234.eurprd01.prod.exchangelabs.com Hello [192.0.2.25]\r\n250-SIZE 157286400\r\n"
    b"250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-8BITMIME\r\n"
    b"250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
# After STARTTLS: no STARTTLS any more, AUTH appears (Postfix smtpd_tls_auth_only).
POSTFIX_TLS = (
    b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN\r\n250 CHUNKING\r\n"
)


def reply(data: bytes) -> Reply:
    (parsed,) = ReplyParser().feed(data)
    return parsed


# name, bytes, greeting name, greeting text, extensions, params, starttls, malformed
CASES = [
    ("postfix", POSTFIX, "mail.example.org", "",
     ("8BITMIME", "AUTH", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "ETRN", "PIPELINING", "SIZE", "SMTPUTF8",
      "STARTTLS", "VRFY"),
     {"AUTH": "PLAIN LOGIN", "SIZE": "10240000"}, True, 1),
    ("exim", EXIM, "mx.example.net", "Hello scanner.example [192.0.2.25]",
     ("8BITMIME", "CHUNKING", "HELP", "PIPELINING", "PRDR", "SIZE", "STARTTLS", "X_PIPE_CONNECT"),
     {"SIZE": "52428800"}, True, 0),
    ("gmail", GMAIL, "mx.google.com", "at your service, [192.0.2.25]",
     ("8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES", "PIPELINING", "SIZE", "SMTPUTF8", "STARTTLS"),
     {"SIZE": "157286400"}, True, 0),
    ("outlook", OUTLOOK, "AM0PR01MB1234.eurprd01.prod.exchangelabs.com", "Hello [192.0.2.25]",
     ("8BITMIME", "BINARYMIME", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "PIPELINING", "SIZE", "SMTPUTF8",
      "STARTTLS"),
     {"SIZE": "157286400"}, True, 0),
    ("postfix-after-tls", POSTFIX_TLS, "mail.example.org", "",
     ("AUTH", "CHUNKING", "PIPELINING", "SIZE"), {"AUTH": "PLAIN", "SIZE": "10240000"}, False, 0),
    ("no-extensions", b"250 tiny.example\r\n", "tiny.example", "", (), {}, False, 0),
    ("lowercase-and-duplicates", b"250-x\r\n250-starttls\r\n250-StartTLS\r\n250 size  100   200\r\n", "x", "",
     ("SIZE", "STARTTLS"), {"SIZE": "100 200"}, True, 0),
    ("garbage-lines", b"250-x\r\n250-\r\n250--DASH\r\n250-\xff\xfe\r\n250 OK\r\n", "x", "",
     ("OK",), {}, False, 3),
    ("refusal-advertises-nothing", b"554-x go away\r\n554 STARTTLS\r\n", "x", "go away", (), {}, False, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "greeting_name", "greeting_text", "extensions", "params", "starttls", "malformed"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_parse_ehlo(
    name: str,
    data: bytes,
    greeting_name: str,
    greeting_text: str,
    extensions: tuple[str, ...],
    params: dict[str, str],
    starttls: bool,
    malformed: int,
) -> None:
    info = parse_ehlo(reply(data))
    assert (info.greeting_name, info.greeting_text) == (greeting_name, greeting_text)
    assert info.extensions == extensions
    assert info.params == params
    assert (info.starttls, info.malformed, info.truncated) == (starttls, malformed, False)


def test_extensions_are_bounded() -> None:
    lines = b"".join(b"250-EXT%d\r\n" % i for i in range(200))
    info = parse_ehlo(reply(b"250-x\r\n" + lines + b"250 STARTTLS\r\n"))
    assert len(info.extensions) == MAX_EXTENSIONS and info.truncated
    assert info.starttls and "STARTTLS" not in info.extensions  # seen past the cap, not recorded


def test_long_params_are_bounded() -> None:
    info = parse_ehlo(reply(b"250-x\r\n250 AUTH " + b"A" * 1500 + b"\r\n"))
    assert len(info.params["AUTH"]) <= 256


@given(st.lists(st.text(max_size=40), min_size=1, max_size=10), st.sampled_from([250, 220, 550]))
def test_any_reply_gives_an_ehlo_info(lines: list[str], code: int) -> None:
    info = parse_ehlo(Reply(code, tuple(lines), None))
    assert list(info.extensions) == sorted(set(info.extensions))
    assert all(k.isupper() or not k.isalpha() for k in info.extensions)
    assert set(info.params) <= set(info.extensions)
    assert info.starttls == ("STARTTLS" in info.extensions)  # under the cap both agree


def test_record_round_trips() -> None:
    info = parse_ehlo(reply(POSTFIX))
    assert records.decode(EhloInfo, orjson.loads(records.encode(info))) == info
    records.json_schema(EhloInfo)


def test_greeting_name_and_text_are_bounded_like_params() -> None:
    """A peer-chosen greeting is as bounded as a parameter: MAX_PARAM_TEXT characters, the cut marked."""
    name, text = "n" * 1000, "t" * 1000
    info = parse_ehlo(reply(f"250-{name} {text}\r\n250 SIZE {'9' * 1000}\r\n".encode()))
    assert info.greeting_name == "n" * (MAX_PARAM_TEXT - 1) + "…"
    assert info.greeting_text == "t" * (MAX_PARAM_TEXT - 1) + "…"
    assert info.params["SIZE"] == "9" * (MAX_PARAM_TEXT - 1) + "…"


@pytest.mark.parametrize("code", [250, 554])
def test_reply_without_lines_has_no_greeting_and_no_extensions(code: int) -> None:
    """A Reply with no text lines at all (constructed, never parsed) reads as an empty greeting."""
    info = parse_ehlo(Reply(code, (), None))
    assert (info.code, info.greeting_name, info.greeting_text) == (code, "", "")
    assert (info.extensions, info.params, info.starttls, info.malformed) == ((), {}, False, 0)
