"""Keep secrets out of evidence: by key name, by URI userinfo, and by Airflow's secrets masker.

Airflow registers every Connection password (and sensitive extras) it hands to a task with
its secrets masker; :func:`redact` applies that masker too, so a secret that reaches a
message through an exception string is still replaced by ``***``.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
#: A key names a secret when one of its words (split at _ - . or camelCase) is one of these.
SECRET_WORD_RE = re.compile(
    r"(?:^|[_.\-])(pass|password|passwd|pwd|secrets?|tokens?|credentials?|private[_-]?key|api[_-]?key|"
    r"access[_-]?key|authorization|cookies?|session[_-]?key)(?:$|[_.\-])",
    re.IGNORECASE,
)
_SAFE_KEYS = {"attempt_token"}
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """``db_password``, ``ETL_API_TOKEN``, ``apiKey`` yes; ``tests_passed``, ``attempt_token`` no."""
    if key in _SAFE_KEYS:
        return False
    return bool(SECRET_WORD_RE.search(_CAMEL_RE.sub("_", key)))


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
    if key is not None and is_secret_key(key):
        return MASK if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
