"""What a turn that ended tells operators: one record, handed to every consumer after the end was posted.

Metrics, per-user metering and turn events all read the same ``TurnReport``, built once from what
the worker already knows, and run only after the terminal event went out, so none of them adds
to the client's wait. A consumer that fails is logged and never affects the turn or the others.
The report carries ids, outcome, timings and usage, never the prompt or the answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from chalicelib.logs import logger


@dataclass(frozen=True)
class TurnReport:
    turn_id: str
    user_id: str
    connection_id: str
    session_id: str
    backend: str
    stage: str
    outcome: str  # "done", or the terminal error's code ("interrupted", "throttled", ...)
    duration_ms: int = 0
    queue_ms: int = 0
    first_token_ms: Optional[int] = None
    messages: int = 0  # events posted to the client for this run of the turn
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None

    @property
    def failed(self) -> bool:
        return self.outcome != "done"

    def usage(self) -> Optional[Dict[str, int]]:
        """``{inputTokens, outputTokens}`` when the backend reported them."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return {"inputTokens": self.input_tokens or 0, "outputTokens": self.output_tokens or 0}


Consumer = Callable[[Any, TurnReport], None]  # (runtime, report)


def consumers() -> List[Consumer]:
    """Who reads a report, in order; imported here, on first use, so a cold start pays for none."""
    from chalicelib.turns.eventbus import publish_turn_event
    from chalicelib.turns.metering import meter
    from chalicelib.turns.metrics import record_turn

    return [record_turn, meter, publish_turn_event]


def report_turn(runtime: Any, report: TurnReport) -> None:
    """Hand the report to every consumer; each failure is logged, none is raised."""
    for consumer in consumers():
        try:
            consumer(runtime, report)
        except Exception:  # noqa: BLE001 - reporting must never fail or delay a turn
            logger.exception("turn report consumer failed", extra={"consumer": getattr(consumer, "__name__", "?")})
