"""What an EHLO reply says about the server (RFC 5321 §4.1.1.1).

A real sample (Postfix)::

    250-mx.example.org
    250-PIPELINING
    250-SIZE 10240000
    250-VRFY
    250-ETRN
    250-STARTTLS
    250-ENHANCEDSTATUSCODES
    250-8BITMIME
    250-DSN
    250-SMTPUTF8
    250 CHUNKING

The first line is the server's name and an optional greeting; every further
line is ``ehlo-keyword *( SP ehlo-param )`` where the keyword is
``(ALPHA / DIGIT) *(ALPHA / DIGIT / "-")``, read leniently to also admit "_"
(Exim advertised ``X_PIPE_CONNECT``).  Keywords are case-insensitive, so
they are recorded uppercase.  Lines that do not fit the grammar (the legacy
``AUTH=LOGIN PLAIN`` form among them) are counted, not recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.peertext import bound_line, bound_text
from probes.smtp.reply import Reply

__all__ = ["MAX_EXTENSIONS", "EhloInfo", "parse_ehlo"]

#: Extensions recorded per reply; real servers advertise 5-20.
MAX_EXTENSIONS = 64
#: Characters kept of a greeting or of one extension's parameters.
MAX_PARAM_TEXT = 256

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True, slots=True)
class EhloInfo:
    """The extensions a server advertised in its EHLO reply.

    Fields:
      code: the reply code (extensions are read only from a 250 reply).
      greeting_name: the first word of the first line: the name the server gives itself.
      greeting_text: the rest of the first line (bounded).
      extensions: advertised keywords, uppercase, sorted, without duplicates.
      params: keyword -> its parameters as sent (bounded), for keywords that have any,
        e.g. SIZE -> "35882577", AUTH -> "PLAIN LOGIN".
      starttls: STARTTLS was advertised (RFC 3207), even past the MAX_EXTENSIONS cap.
      malformed: extension lines that do not fit the ehlo-line grammar.
      truncated: more than MAX_EXTENSIONS distinct keywords; the rest were dropped.
    """

    code: int
    greeting_name: str
    greeting_text: str
    extensions: tuple[str, ...]
    params: dict[str, str]
    starttls: bool
    malformed: int
    truncated: bool


def parse_ehlo(reply: Reply) -> EhloInfo:
    """The ``EhloInfo`` of an EHLO reply; a reply other than 250 advertises nothing."""
    first = reply.lines[0] if reply.lines else ""
    name, _, greeting = first.strip().partition(" ")
    keywords: dict[str, str] = {}
    malformed = 0
    truncated = False
    starttls = False
    body = reply.lines[1:] if reply.code == 250 else ()
    for line in body:
        keyword, _, rest = line.strip().partition(" ")
        if not _KEYWORD.match(keyword):
            malformed += 1
            continue
        keyword = keyword.upper()
        # Seen past the cap too: the cap bounds the record, not the one fact that matters most.
        starttls = starttls or keyword == "STARTTLS"
        if keyword in keywords:
            continue  # the first advertisement wins
        if len(keywords) >= MAX_EXTENSIONS:
            truncated = True
            continue
        keywords[keyword] = bound_line(rest, MAX_PARAM_TEXT)
    return EhloInfo(
        code=reply.code,
        greeting_name=bound_text(name, MAX_PARAM_TEXT),
        greeting_text=bound_text(greeting.strip(), MAX_PARAM_TEXT),
        extensions=tuple(sorted(keywords)),
        params={k: v for k, v in sorted(keywords.items()) if v},
        starttls=starttls,
        malformed=malformed,
        truncated=truncated,
    )
