"""One-shot answers (``GET /v1/answers?q=``): when two questions are the same one.

A question names its turn through a request id derived from its normal form, so asking it again
finds the same turn, and its answer, instead of calling the agent again; ``actions.ask`` lets that
turn answer again for ``ANSWER_CACHE_TTL_S`` after it ended (``reuse_for_ms``), then runs it anew.
Request ids are per user: an agent's answer may depend on who asks (memory, knowledge, tools).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s?.!]+$")


def normal_form(question: str) -> str:
    """The question as compared: Unicode-normalised (NFKC), case-folded, runs of whitespace as one
    space, without surrounding space or trailing ``?``, ``.``, ``!``. "What is SQS?" and
    "  what   is SQS " are the same question; "What is SNS?" is not."""
    folded = unicodedata.normalize("NFKC", question).casefold()
    return _TRAILING.sub("", _SPACE.sub(" ", folded).strip())


def request_id(question: str) -> str:
    """The request id of the question's turn (within the protocol's 128 characters)."""
    return "answer:" + hashlib.sha256(normal_form(question).encode("utf-8")).hexdigest()
