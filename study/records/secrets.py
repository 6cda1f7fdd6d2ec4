"""Credentials in URLs: masked wherever a URL is printed, tagged or logged, and scrubbed from errors."""

from __future__ import annotations

import re
from urllib.parse import unquote

# Query parameters that carry a credential (libpq's password and sslpassword, tokens, keys).
SECRET_PARAMS = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|sslpassword|secret|token|access_token|auth_token|api_key|apikey|key)=)"
    r"([^&;#]*)",
    re.IGNORECASE,
)
USERINFO = re.compile(r"(://[^/@:?#]*:)([^@/?#]*)@")


def redact(url: str) -> str:
    """The URL with every credential masked (`user:***@`, `?password=***`), for messages and tags."""
    url = USERINFO.sub(r"\1***@", url)
    return SECRET_PARAMS.sub(r"\1***", url)


def secrets_of(url: str) -> list[str]:
    """The credential values a URL holds, raw and percent-decoded."""
    values = [m.group(2) for m in USERINFO.finditer(url)] + [m.group(2) for m in SECRET_PARAMS.finditer(url)]
    return sorted({v for raw in values if raw for v in (raw, unquote(raw))}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (e.g. a driver's error) with the URL and any credential of it masked."""
    text = text.replace(url, redact(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
