"""PII detection and masking: each kind found with its checksum, look-alikes left alone."""

from __future__ import annotations

import pytest

from tuneforge.data.pii import find_pii, iban_valid, luhn_valid, mask_pii


def kinds(text: str, **options) -> list[str]:
    return [match.kind for match in find_pii(text, **options)]


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize(("text", "masked"), [
    ("mail john.doe@example.co.uk today", "mail [EMAIL] today"),
    ("see https://example.org/a?b=1.", "see [URL]."),
    ("or www.example.com, thanks", "or [URL], thanks"),
    ("pay GB82 WEST 1234 5698 7654 32 now", "pay [IBAN] now"),
    ("card 4111 1111 1111 1111 expired", "card [CARD] expired"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("host 192.168.0.1 is down", "host [IP] is down"),
    ("v6 2001:db8::1 too", "v6 [IP] too"),
    ("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]"),
])
def test_masks_each_kind(text: str, masked: str) -> None:
    assert mask_pii(text, find_pii(text)) == masked


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn",  # not a card, and too many digits for a phone
    "we met on 2024-01-15 at 10:30",  # a date and a time
    "address 999.1.1.1 is no IP",
    "it costs 1500000 dollars",  # a plain number
    "order 12345",
])
def test_leaves_look_alikes_alone(text: str) -> None:
    assert find_pii(text) == []


def test_names_only_from_the_list_and_kinds_can_be_chosen() -> None:
    text = "Maria wrote to bob@example.com"
    assert kinds(text) == ["email"]  # no list, no names guessed
    assert mask_pii(text, find_pii(text, names=["maria"])) == "[NAME] wrote to [EMAIL]"
    assert kinds(text, kinds=["url"]) == []


def test_an_email_domain_is_not_also_a_url() -> None:
    assert kinds("write to info@www.example.com") == ["email"]
