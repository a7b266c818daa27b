"""X-Ray traces of the worker (Powertools Tracer): a subsegment per turn and per Bedrock stream.

Tracing patches botocore, so every AWS call a turn makes (the Bedrock request, each
PostToConnection, each DynamoDB read and write) is a subsegment of its own; the explicit ones
below add what botocore cannot see: the whole turn, and the Bedrock stream read to its end (the
request's own subsegment ends when the response headers arrive). The Tracer is built on first use,
in the worker only, so the WebSocket handlers' cold starts never import the X-Ray SDK. Outside
Lambda (the local stack, tests) there is no Tracer and these are no-ops;
``POWERTOOLS_TRACE_DISABLED=true`` turns it off in Lambda too.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

_tracer: Optional[Any] = None
_lock = threading.Lock()


def tracer() -> Optional[Any]:
    """The worker's Powertools Tracer (botocore patched), created once per container; None outside
    Lambda, where even a disabled one would build an X-Ray sampler with a botocore client of its own
    (about 20 MB and 130 ms) that nothing would use."""
    global _tracer
    with _lock:
        if _tracer is None and os.environ.get("LAMBDA_TASK_ROOT"):
            from aws_lambda_powertools import Tracer

            _tracer = Tracer(service="agentstream", patch_modules=("botocore",))
        return _tracer


def use(replacement: Optional[Any]) -> None:
    """Trace with this object (anything with a Powertools ``provider``) instead; None: the default."""
    global _tracer
    with _lock:
        _tracer = replacement


@contextmanager
def subsegment(name: str, **annotations: str) -> Iterator[None]:
    """A traced block; ``annotations`` are indexed ids (a turn id), never content."""
    traced = tracer()
    if traced is None:
        yield
        return
    with traced.provider.in_subsegment(name) as segment:
        for key, value in annotations.items():
            segment.put_annotation(key, value)
        yield
