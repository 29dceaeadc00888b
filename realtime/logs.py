"""A logging filter that keeps credentials out of every log line."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    # JWTs (three base64url parts, the first an encoded JSON header)
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)(token=)[^&\s'\"]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), r"\1[redacted]"),
    # API keys (lck_<prefix>_<secret>): the public prefix stays, to tell keys apart
    (re.compile(r"\b(lck_[0-9a-f]{12}_)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(api-key\s+)[^\s'\"]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
