"""Personal data in texts: find e-mail addresses, phone numbers, URLs, IP addresses, IBANs, card numbers and
listed names, and mask them.

Regular expressions with checksums (Luhn for cards, ISO 7064 mod 97 for IBANs, `ipaddress` for IPs) rather
than an NER library: they need no model, are exact about what they find, and a number that fails its checksum
(an order id, a date) is left alone. Person names are only found from a list the user gives: guessing names
without a model would mask ordinary capitalised words.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PII_KINDS = ("email", "url", "iban", "credit_card", "ip", "phone", "name")
# What a masked span becomes, e.g. "write to [EMAIL]".
MASKS = {"email": "[EMAIL]", "url": "[URL]", "iban": "[IBAN]", "credit_card": "[CARD]", "ip": "[IP]",
         "phone": "[PHONE]", "name": "[NAME]"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d{1,4}\)?(?:[ .\-/]?\(?\d{2,5}\)?){1,5}(?![\w])")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_URL_TRAILING = ".,;:!?)]}'\""


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    text: str


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, and the remainder mod 97 is 1."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _url_span(match: re.Match[str]) -> tuple[int, int]:
    end = match.end()
    while end > match.start() and match.string[end - 1] in _URL_TRAILING:
        end -= 1
    return match.start(), end


def _candidates(text: str, kind: str, names: Sequence[str]) -> Iterable[tuple[int, int]]:
    if kind == "email":
        yield from (m.span() for m in _EMAIL.finditer(text))
    elif kind == "url":
        yield from (_url_span(m) for m in _URL.finditer(text))
    elif kind == "iban":
        yield from (m.span() for m in _IBAN.finditer(text) if iban_valid(m.group()))
    elif kind == "credit_card":
        for match in _CARD.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                yield match.span()
    elif kind == "ip":
        for pattern in (_IPV4, _IPV6):
            for match in pattern.finditer(text):
                try:
                    ipaddress.ip_address(match.group())
                except ValueError:
                    continue
                yield match.span()
    elif kind == "phone":
        for match in _PHONE.finditer(text):
            found = match.group()
            digits = re.sub(r"\D", "", found)
            separated = found.startswith(("+", "00", "(")) or bool(re.search(r"\d[ .\-/()]+\d", found))
            # 7-15 digits (E.164), written like a phone number (a leading + or separators, or 10+ digits), and
            # not a date: plain counts and years are not phone numbers.
            if 7 <= len(digits) <= 15 and (separated or len(digits) >= 10) and not _DATE.fullmatch(found.strip()):
                yield match.span()
    elif kind == "name" and names:
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) +
                             r")\b", re.IGNORECASE)
        yield from (m.span() for m in pattern.finditer(text))


def find_pii(text: str, kinds: Sequence[str] = PII_KINDS, names: Sequence[str] = ()) -> list[PiiMatch]:
    """Non-overlapping matches, in text order; where two kinds overlap the earlier kind of PII_KINDS wins
    (an e-mail's domain is not also a URL, a card number is not also a phone number)."""
    taken: list[PiiMatch] = []
    for kind in PII_KINDS:
        if kind not in kinds:
            continue
        for start, end in _candidates(text, kind, [n for n in names if n.strip()]):
            if end > start and not any(start < m.end and m.start < end for m in taken):
                taken.append(PiiMatch(kind, start, end, text[start:end]))
    return sorted(taken, key=lambda m: m.start)


def mask_pii(text: str, matches: Sequence[PiiMatch]) -> str:
    """The text with each match replaced by its kind's mask, e.g. "mail [EMAIL] or call [PHONE]"."""
    pieces, cursor = [], 0
    for match in sorted(matches, key=lambda m: m.start):
        pieces += [text[cursor:match.start], MASKS[match.kind]]
        cursor = match.end
    return "".join(pieces) + text[cursor:]
