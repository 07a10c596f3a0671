"""Domain names: normalisation to lowercase A-labels and safe display of raw text.

Kept apart from ``inputs`` (which reads lists) because reports and the
composition root need the same rules for names that never came from a list.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

__all__ = ["MAX_RAW_CHARS", "escape_text", "normalise_domain"]

#: Bound on ``InputItem.raw`` (after escaping) so reports cannot be flooded by one line.
MAX_RAW_CHARS = 256
#: Names longer than this are rejected before IDNA processing (253 octets + slack for U-labels).
MAX_NAME_CHARS = 1024
#: RFC 1035 §2.3.4: 63 octets per label, 255 per wire name = 253 in presentation form.
MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253

_LDH_LABEL = re.compile(r"[a-z0-9-]+")
# Fast path for the common case (an ordinary lower-case LDH name); anything
# else takes the label-by-label path that can say what is wrong.
_PLAIN_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NOT_LDH = re.compile(r"[^a-z0-9-]")


def escape_text(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """``text`` with control/format characters escaped (``\\x00``, ``\\u200b``), at most ``limit`` chars.

    Reason: raw input ends up in terminals and reports; a bidi override or an
    escape sequence from a hostile list must not be able to rewrite them.
    """
    if len(text) < limit and text.isprintable():
        return text  # fast path: the common case costs one C-level scan
    out: list[str] = []
    used = 0
    for ch in text:
        piece = ch
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            piece = ch.encode("unicode_escape").decode("ascii")
        if used + len(piece) > limit - 1:
            out.append("…")
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


def _is_ip_literal(name: str) -> bool:
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _ascii_label_reason(label: str) -> str | None:
    if len(label) > MAX_LABEL_OCTETS:
        return f"label too long ({len(label)} > {MAX_LABEL_OCTETS})"
    if not _LDH_LABEL.fullmatch(label):
        bad = _NOT_LDH.search(label)
        assert bad is not None
        return f"invalid character '{escape_text(bad.group())}'"
    if label[0] == "-" or label[-1] == "-":
        return "label starts or ends with a hyphen"
    return None


def _label_to_alabel(label: str) -> tuple[str | None, str | None]:
    """(A-label, None) or (None, reason) for one already lower-cased label."""
    if not label:
        return None, "empty label"
    if label.isascii() and not label.startswith("xn--"):
        reason = _ascii_label_reason(label)
        return (None, reason) if reason else (label, None)
    try:
        # UTS #46 processing already ran on the whole name; alabel() applies the
        # IDNA2008 label rules (RFC 5891 §5.4) and checks an xn-- label's Punycode.
        alabel = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        return None, "idna: " + escape_text(str(exc), 120)
    reason = _ascii_label_reason(alabel)
    return (None, reason) if reason else (alabel, None)


def normalise_domain(text: str) -> tuple[str | None, str | None]:
    """Normalise one name: ``(domain, None)`` when valid, ``(None, reason)`` when not.

    Stripped, lower-cased (UTS #46 mapping, non-transitional, so ``ß`` stays
    ``ß``), one trailing dot removed, converted to A-labels, then held to
    RFC 1035 lengths, LDH labels, at least two labels, a non-numeric top label
    (RFC 3696 §2: keeps ``127.1`` style IPv4 shorthands out) and not an IP literal.
    """
    name = text.strip()
    if not name:
        return None, "empty name"
    if len(name) > MAX_NAME_CHARS:
        return None, "name too long"
    if name.isascii():
        name = name.lower()
        plain = name[:-1] if name.endswith(".") else name
        if (
            len(plain) <= MAX_NAME_OCTETS
            and _PLAIN_NAME.fullmatch(plain)
            and "xn--" not in plain
            and not plain.rpartition(".")[2].isdigit()  # IPv4 literals end in a numeric label
        ):
            return plain, None
    if not name.isascii():
        try:
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError) as exc:
            return None, "idna: " + escape_text(str(exc), 120)
    # After the UTS #46 mapping, so full-width digits cannot hide an address.
    if (":" in name or name.rstrip(".").replace(".", "").isdigit()) and _is_ip_literal(name.rstrip(".")):
        return None, "ip address"
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return None, "empty label"
    labels = name.split(".")
    alabels: list[str] = []
    for label in labels:
        alabel, reason = _label_to_alabel(label)
        if alabel is None:
            return None, reason
        alabels.append(alabel)
    result = ".".join(alabels)
    if len(result) > MAX_NAME_OCTETS:
        return None, f"name too long ({len(result)} > {MAX_NAME_OCTETS})"
    if len(alabels) < 2:
        return None, "single-label name"
    if alabels[-1].isdigit():
        return None, "numeric top-level label"
    return result, None
