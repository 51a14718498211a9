"""Credentials out of what is printed or logged: database and server URLs often carry a password
(`postgresql://user:secret@host/db`), and a message, a log line or a terminal scrollback must never repeat it."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@  (the password is anything up to the last @ before the host)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/]*)(?=@[^\s@]*)")
# ?password=...&token=...  in a query string
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|api_key|apikey|access_key|"
                    r"secret_key|access_token|auth)=)(?P<secret>[^&;\s#'\"]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with the password of its user part and any secret query parameter replaced by ***."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """Every URL inside `text` (an error message, a log line) with its credentials masked; the rest unchanged."""
    text = _USERINFO.sub(lambda match: match["head"] + MASK if match["secret"] else match[0], text)
    return _QUERY.sub(lambda match: match["head"] + MASK if match["secret"] else match[0], text)
