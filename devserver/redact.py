"""Keep tokens out of the local stack's logs.

Clients connect with ``ws://host/?token=JWT`` (browsers cannot set headers), so request
lines, URLs and header values are secrets. Servers log them in places nobody chose: aiohttp
logs the start of an oversized or malformed request line in the exception of its
``Error handling request`` record, http.server and werkzeug log request lines and
``Bad request syntax ('...')``. ``redact`` blanks what looks like a credential in any text;
``install_log_filters`` puts a filter doing that on the loggers those servers write to.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["REDACTED", "RedactingFilter", "SERVER_LOGGERS", "install_log_filters", "redact"]

REDACTED = "<redacted>"

#: (pattern, replacement), applied in order. Values end at what ends a URL parameter or a
#: header value in a log line, a repr or a traceback: ``&``, whitespace, quotes, a backslash
#: (``\r\n`` in a bytes repr) or, for headers, a comma.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # ?token=..., &access_token=..., id_token=... (also when cut short: "...=eyJhbGc...")
    (re.compile(r"(?i)(token=)[^&\s'\"\\]+"), r"\1" + REDACTED),
    # "Authorization: Bearer x", "'Authorization': 'AWS4-HMAC-SHA256 ...'", authorization=x
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"\\]+"), r"\1" + REDACTED),
    # a bearer credential anywhere else
    (re.compile(r"(?i)(\bbearer\s+)[^\s'\",\\]+"), r"\1" + REDACTED),
    # anything shaped like a JWT (header "eyJ...", payload and signature if present), e.g. in a path
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
)

#: The loggers local servers write request lines, URLs or exceptions about requests to.
#: A logger's filters do not apply to records its children log, so each one is named.
SERVER_LOGGERS: tuple[str, ...] = (
    "aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.websocket", "aiohttp.internal",
    "asyncio", "devserver", "devserver.apigw", "devserver.poller", "werkzeug",
)


def redact(text: str) -> str:
    """``text`` with every token, bearer credential, Authorization value and JWT blanked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message, traceback or stack holds a credential; drops nothing.

    Records without one are left untouched (no formatting cost beyond the check). A record
    that is rewritten carries its final text in ``msg`` with no ``args``, and its traceback
    as redacted ``exc_text`` with no ``exc_info``, so no formatter can render the original.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message, broken = record.getMessage(), False
        except (TypeError, ValueError, KeyError):  # bad args: logging's error report would print them
            message, broken = f"{record.msg} (unformattable log arguments dropped)", True
        clean = redact(message)
        if broken or clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            clean_text = redact(text)
            if clean_text != text:
                record.exc_info, record.exc_text = None, clean_text
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_filters(names: Iterable[str] = SERVER_LOGGERS) -> None:
    """Put the redacting filter on each named logger (idempotent: once per logger)."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
