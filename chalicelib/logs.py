"""Structured JSON logs (Powertools Logger) with the ids that tie a line to a turn.

Keys are context-local, so concurrent handlers (the local stack runs many in one process) and the
relay thread each log their own connection, turn and user. Tokens are never logged; prompts and
answers only when ``LOG_CONTENT`` asks. The level comes from ``POWERTOOLS_LOG_LEVEL``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from aws_lambda_powertools.logging import Logger

logger = Logger(service="agentstream")


@contextmanager
def log_context(**keys: Optional[str]) -> Iterator[None]:
    """Attach ids to every log line written inside the block (in this thread or context)."""
    present = {name: value for name, value in keys.items() if value is not None}
    logger.thread_safe_append_keys(**present)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(list(present))
