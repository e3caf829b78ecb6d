"""Keep secrets out of evidence: by key name, by URI userinfo, and by Airflow's secrets masker.

Airflow registers every Connection password (and sensitive extras) it hands to a task with
its secrets masker; :func:`redact` applies that masker too, so a secret that reaches a
message through an exception string is still replaced by ``***``.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY_RE = re.compile(
    r"(pass(word|wd)?|secret|token|credential|private[_-]?key|api[_-]?key|authorization|cookie|session[_-]?key)",
    re.IGNORECASE,
)
_SAFE_KEYS = {"attempt_token"}
_URI_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*):(?P<pw>[^/@\s]+)@")


def _airflow_redact(value: Any) -> Any:
    try:
        from airflow.sdk._shared.secrets_masker import redact as sdk_redact
    except ImportError:  # pragma: no cover - layout of older Task SDKs
        return value
    return sdk_redact(value)


def redact_text(text: str) -> str:
    text = _URI_USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    redacted = _airflow_redact(text)
    return redacted if isinstance(redacted, str) else text


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` with secret-named keys masked and secret strings replaced."""
    if key is not None and key not in _SAFE_KEYS and _SECRET_KEY_RE.search(key):
        return MASK if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
