"""Retrying what AWS says is worth retrying: backoff with jitter, and which errors qualify.

botocore already retries each call a few times (standard mode); these are the app's own, longer
retries at points where giving up costs the client dearly: claiming a turn (else it waits out the
queue's visibility timeout) and posting an answer (else the relay would go silent).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

# Error codes that mean "too much traffic or a passing fault: the same call may succeed later".
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",  # API Gateway: the client's send buffer is full
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


def backoff_s(attempt: int, base_s: float = 0.5, cap_s: float = 4.0) -> float:
    """Exponential backoff with jitter (half fixed, half random), as AWS recommends."""
    import random  # only on a retry, not on every cold start

    ceiling = min(cap_s, base_s * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def redelivery_delay_s(receives: int, base_s: int, cap_s: int) -> int:
    """How long a failed SQS record stays invisible: doubled per receive (the first receive waits
    ``base_s``), never more than ``cap_s`` nor SQS's 12-hour maximum. No jitter: records of one
    batch fail together and come back to different executions anyway."""
    return max(0, min(cap_s, 43_200, base_s * 2 ** max(0, min(receives - 1, 20))))


def error_code(exc: BaseException) -> Optional[str]:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def is_retryable(exc: BaseException) -> bool:
    """Throttled, a 5xx, or a connection that broke: worth another try after a pause."""
    code = error_code(exc)
    if code is not None:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)  # type: ignore[attr-defined]
        return code in RETRYABLE_CODES or status >= 500 or status == 429
    from botocore.exceptions import ConnectionError as BotoConnectionError, ReadTimeoutError

    return isinstance(exc, (BotoConnectionError, ReadTimeoutError))


def retrying(
    call: Callable[[], T],
    attempts: int,
    on_retry: Callable[[BaseException, int], None] = lambda exc, attempt: None,
    sleep: Callable[[float], None] = time.sleep,
    base_s: float = 0.2,
) -> T:
    """``call()``, again after a backoff while it raises something retryable, ``attempts`` times at most."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - sorted below: only retryable errors are retried
            if attempt + 1 >= attempts or not is_retryable(exc):
                raise
            on_retry(exc, attempt)
            sleep(backoff_s(attempt, base_s=base_s))
    raise AssertionError("unreachable")  # pragma: no cover
